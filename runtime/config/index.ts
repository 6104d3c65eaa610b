export { loadConfig, parseConfig, SIMULATOR_DEFAULT_SECRET } from './load-config.ts';
export { ConfigError } from './config-error.ts';
export { Secret } from './secret.ts';
export type * from './types.ts';
