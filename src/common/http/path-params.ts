/**
 * The longest path parameter the router takes (Fastify's maxParamLength, decoded): the longest id a path carries
 * is an asset id (128 characters), and Fastify's default of 100 would answer 414 for an asset the registry
 * accepts. A longer one is answered 414 before any route sees it.
 */
export const MAX_PATH_PARAM_LENGTH = 128;
