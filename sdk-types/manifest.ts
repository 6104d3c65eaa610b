import type { EventType } from './events.ts';
import type { Permission } from './api.ts';

export interface PluginLimitsOverride {
  memoryMb?: number;
  entryTimeoutMs?: number;
  cpuPerEventMs?: number;
  pendingCalls?: number;
  /** bytes of events that may wait for the plugin before more are dropped (default 32 MiB) */
  queueBytes?: number;
  concurrentEvents?: number;
}

/** The `qqbot` field of a plugin's package.json. */
export interface PluginManifest {
  events: EventType[];
  permissions?: Permission[];
  /** JSON Schema of the plugin's bot.yaml section; defaults are applied. */
  config?: Record<string, unknown>;
  limits?: PluginLimitsOverride;
  /** Hosts `ctx.fetch` may reach (with `net.fetch`), e.g. "api.example.com" or "127.0.0.1:8080". */
  fetchHosts?: string[];
}
