export type * from './events.ts';
export type * from './context.ts';
export type * from './manifest.ts';
export type { Permission, ApiMethodName, MessageBody, ReplyBody, SendResult, MediaUpload, PluginApi, PluginCallError } from './api.ts';
export { API_METHODS, PERMISSIONS } from './api.ts';
export { EVENT_TYPES } from './event-types.ts';
export { PLUGIN_MANIFEST_SCHEMA } from './manifest-schema.ts';
