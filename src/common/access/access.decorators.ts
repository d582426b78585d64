import { applyDecorators, SetMetadata } from '@nestjs/common';
import { ApiExtension } from '@nestjs/swagger';
import { AddRouteConfig } from '../http/route-config';
import type { Permission } from './permissions';

export const ACCESS_METADATA = 'gateway:access';

/** What a route declares: public, or the permission it needs and the action its audit rows name. */
export type AccessRule =
  { public: true; identifies?: boolean } | { public: false; permission: Permission; action: string };

/**
 * No token needed (health, docs). Every route carries either this or RequirePermission;
 * the global guard denies a route that carries neither. With `identifies`, a bearer token that verifies
 * names its caller to the handler (callerOf) to show it more; one that does not is ignored, never refused,
 * and the request is not audited, as no public request is.
 */
export const Public = (options: { identifies?: boolean } = {}): MethodDecorator & ClassDecorator =>
  SetMetadata(ACCESS_METADATA, options.identifies ? { public: true, identifies: true } : { public: true });

/** The OpenAPI operation's extension that names the permission its route needs (the 403 names it too). */
export const REQUIRED_PERMISSION_EXTENSION = 'x-required-permission';

/** Where the rule is also found in Fastify's route config, for the check made before the body is read. */
export const ACCESS_ROUTE_CONFIG = 'gatewayAccess';

/**
 * The caller needs `permission`; `action` names the route in the audit trail (e.g. `model.infer`).
 * On a method, the rule is also put in the route's Fastify config, so that the caller is checked when
 * the request arrives (src/auth/access.hook.ts), before its body is read. The permission is also named
 * in the route's OpenAPI operation (REQUIRED_PERMISSION_EXTENSION, and its 403), from this one declaration.
 */
export const RequirePermission = (permission: Permission, action: string): MethodDecorator & ClassDecorator => {
  const rule: AccessRule = { public: false, permission, action };
  return applyDecorators(
    SetMetadata(ACCESS_METADATA, rule),
    AddRouteConfig({ [ACCESS_ROUTE_CONFIG]: rule }),
    ApiExtension(REQUIRED_PERMISSION_EXTENSION, permission),
  );
};
