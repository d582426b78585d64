import type { FastifyInstance } from 'fastify';

export interface CatalogRoute {
  method: string;
  url: string;
}

const catalogs = new WeakMap<FastifyInstance, CatalogRoute[]>();

/** Records every route as the router registers it (call before the app initialises). */
export function registerRouteCatalog(fastify: FastifyInstance): void {
  const routes: CatalogRoute[] = [];
  catalogs.set(fastify, routes);
  fastify.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
  });
}

/** Every route the router holds, as registered: the access-matrix test walks them all. */
export function routeCatalog(fastify: FastifyInstance): readonly CatalogRoute[] {
  return catalogs.get(fastify) ?? [];
}
