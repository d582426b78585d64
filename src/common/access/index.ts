export * from './access.decorators';
export * from './permissions';
export * from './audit-note';
export * from './input-digester';
export * from './token-expiry';
