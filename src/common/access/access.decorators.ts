import { SetMetadata } from '@nestjs/common';
import type { Permission } from './permissions';

export const ACCESS_METADATA = 'gateway:access';

/** What a route declares: public, or the permission it needs and the action its audit rows name. */
export type AccessRule = { public: true } | { public: false; permission: Permission; action: string };

/**
 * No token needed (health, docs, metrics). Every route carries either this or RequirePermission;
 * the global guard denies a route that carries neither.
 */
export const Public = (): MethodDecorator & ClassDecorator => SetMetadata(ACCESS_METADATA, { public: true });

/** The caller needs `permission`; `action` names the route in the audit trail (e.g. `model.infer`). */
export const RequirePermission = (permission: Permission, action: string): MethodDecorator & ClassDecorator =>
  SetMetadata(ACCESS_METADATA, { public: false, permission, action });
