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

/** Each route's URL as a pattern of concrete paths, worked out again when routes were added. */
const patterns = new WeakMap<FastifyInstance, { size: number; routes: Array<{ method: string; path: RegExp }> }>();

/**
 * The methods the router answers at a concrete `path` (no query), in the order the routes were
 * registered; empty where no route has that path. Lets a request with another method be told which
 * (405 with Allow) rather than that nothing is there. A route on every path (`*`: the CORS preflight's
 * `OPTIONS *`, which answers only a listed origin's preflight) is left out: with it, every unknown path
 * would be a 405 answering OPTIONS.
 */
export function methodsAt(fastify: FastifyInstance, path: string): string[] {
  const routes = (catalogs.get(fastify) ?? []).filter((route) => route.url !== '*');
  let compiled = patterns.get(fastify);
  if (compiled?.size !== routes.length) {
    compiled = { size: routes.length, routes: routes.map((r) => ({ method: r.method, path: pathPattern(r.url) })) };
    patterns.set(fastify, compiled);
  }
  const methods = new Set<string>();
  for (const route of compiled.routes) if (route.path.test(path)) methods.add(route.method);
  return [...methods];
}

/** A route URL as the router reads it: `:name` (with or without a `(regex)`) is one segment, `*` the rest. */
function pathPattern(url: string): RegExp {
  let source = '';
  for (let i = 0; i < url.length;) {
    const param = /^:[A-Za-z0-9_]+(?:\([^)]*\))?/.exec(url.slice(i));
    if (param) {
      source += '[^/]+';
      i += param[0].length;
    } else if (url[i] === '*') {
      source += '.*';
      i++;
    } else {
      source += url[i].replace(/[.+?^${}()|[\]\\]/g, '\\$&');
      i++;
    }
  }
  return new RegExp(`^${source}$`);
}
