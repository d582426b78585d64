import { RouteConfig } from '@nestjs/platform-fastify';

/** The metadata key under which Nest's RouteConfig keeps a handler's Fastify route config (read off a probe). */
const ROUTE_CONFIG_KEY: unknown = (() => {
  const probe = class {};
  RouteConfig({})(probe);
  const [key] = Reflect.getMetadataKeys(probe) as unknown[];
  return key;
})();

/**
 * Adds keys to a route's Fastify config (request.routeOptions.config). Nest's RouteConfig replaces the
 * whole config, so two decorators that each set their own key (the access rule, a body's early digest)
 * would leave only the one applied last; this merges, in either order.
 */
export function AddRouteConfig(config: Record<string, unknown>): MethodDecorator & ClassDecorator {
  return ((target: object, _key?: string | symbol, descriptor?: PropertyDescriptor) => {
    const holder = (descriptor?.value ?? target) as object;
    const existing = (Reflect.getMetadata(ROUTE_CONFIG_KEY, holder) ?? {}) as Record<string, unknown>;
    Reflect.defineMetadata(ROUTE_CONFIG_KEY, { ...existing, ...config }, holder);
    return descriptor;
  }) as MethodDecorator & ClassDecorator;
}
