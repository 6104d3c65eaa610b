import { EVENT_TYPES } from './event-types.ts';
import { PERMISSIONS } from './api.ts';

/**
 * JSON Schema (draft-07) of the `qqbot` field of a plugin's package.json (`PluginManifest`).
 * Structure only: the host also checks `limits` against its maxima and compiles `config`.
 */
export const PLUGIN_MANIFEST_SCHEMA = {
  type: 'object',
  required: ['events'],
  additionalProperties: false,
  properties: {
    events: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', enum: [...EVENT_TYPES] } },
    permissions: { type: 'array', uniqueItems: true, items: { type: 'string', enum: [...PERMISSIONS] } },
    config: { type: 'object' },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        memoryMb: { type: 'integer', minimum: 8 },
        entryTimeoutMs: { type: 'integer', minimum: 1 },
        cpuPerEventMs: { type: 'integer', minimum: 1 },
        pendingCalls: { type: 'integer', minimum: 1 },
        queueBytes: { type: 'integer', minimum: 65536 },
        concurrentEvents: { type: 'integer', minimum: 1 },
      },
    },
    fetchHosts: {
      type: 'array',
      uniqueItems: true,
      // hostname or hostname:port; no scheme, path or wildcard
      items: { type: 'string', pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$' },
    },
  },
} as const;
