/**
 * What the main process hands the sandbox layer for one plugin instance (one plugin on one bot),
 * and what crosses back. Everything here is JSON: it travels over IPC to the plugin-host process.
 */
import type { EventType } from 'qqbot-sdk-types';

export interface PluginLimits {
  /** isolate memoryLimit */
  memoryMb: number;
  /** wall timeout of every entry into the isolate (dispatch, settle, timer) */
  entryTimeoutMs: number;
  /** plugin top-level + setup */
  loadTimeoutMs: number;
  /** sum of cpuTime deltas of all entries that serve one event */
  cpuPerEventMs: number;
  /** after this, an event's pending calls settle with E_DEADLINE */
  asyncTailMs: number;
  pendingCalls: number;
  payloadBytes: number;
  /**
   * bytes of event JSON that may wait for this instance (in the main process) before more are
   * dropped with `backlog_full`; sized so a burst waits instead of being lost
   */
  queueBytes: number;
  /** events whose handlers run at once (awaiting calls or timers); more wait in the queue */
  concurrentEvents: number;
  /** host-managed timers (setTimeout/setInterval) alive at once; more are refused with E_TIMER_LIMIT */
  timers?: number;
  /** CPU for work outside events (timers, detached chains) per rolling 10 s window */
  backgroundCpuMs?: number;
}

export const DEFAULT_LIMITS: Required<PluginLimits> = {
  memoryMb: 32,
  entryTimeoutMs: 50,
  loadTimeoutMs: 1000,
  cpuPerEventMs: 100,
  asyncTailMs: 30_000,
  pendingCalls: 64,
  payloadBytes: 64 * 1024,
  // a 10,000-event burst of ~2 KB messages fits
  queueBytes: 32 * 1024 * 1024,
  concurrentEvents: 16,
  timers: 256,
  backgroundCpuMs: 1000,
};

/** Upper bounds a manifest's `limits` may ask for. */
export const MAX_LIMITS: Required<PluginLimits> = {
  memoryMb: 256,
  entryTimeoutMs: 1000,
  loadTimeoutMs: 5000,
  cpuPerEventMs: 2000,
  asyncTailMs: 120_000,
  pendingCalls: 512,
  payloadBytes: 1024 * 1024,
  queueBytes: 512 * 1024 * 1024,
  concurrentEvents: 256,
  timers: 4096,
  backgroundCpuMs: 5000,
};

export interface PluginInstanceSpec {
  /** `${bot}/${plugin}`, unique in the runtime */
  id: string;
  plugin: string;
  bot: { name: string; appId: string };
  /** increases on every reload of this instance */
  version: number;
  /** bundled script (esbuild iife, global name `PLUGIN_GLOBAL`) */
  code: string;
  /** esbuild source map (JSON text) for mapping stacks back to the plugin's files */
  sourceMap?: string;
  /** shown in stacks: the plugin's entry file path, relative to the plugins folder */
  filename: string;
  config: unknown;
  permissions: string[];
  events: EventType[];
  limits: PluginLimits;
}

/** An event as it enters a sandbox. `reply`/`ack` are added by the prelude, keyed by `ref`. */
export interface SandboxEvent {
  /** host-side handle the capability layer uses to find the source event (reply windows, msg_seq) */
  ref: string;
  type: string;
  id: string;
  data: unknown;
  shard?: number;
  transport: 'websocket' | 'webhook';
}

/** How a capability answers: always an envelope, never a thrown host Error. */
export type CallResult = { ok: true; value: unknown } | { ok: false; error: { code: string; message: string; [k: string]: unknown } };

/**
 * Implemented by the main process: runs one capability for one instance. Capability names:
 * `api.<method>` (args array), `reply` ({ ref, body }), `ack` ({ ref, code }), `storage.get|set|delete|keys`,
 * `fetch` ({ url, init }). `log` and timers never reach here.
 */
export type CapabilityHandler = (instanceId: string, capability: string, payload: unknown) => Promise<CallResult>;

/**
 * Why an event did not end as handled by a plugin (`qqbot_events_dropped_total{reason}`). `ok` and
 * `error` (the plugin's handler threw) are handled; every other outcome carries one of these.
 */
export type DropReason =
  | 'backlog_full' | 'payload_too_large' | 'host_crashed' | 'quarantined' | 'unloaded' | 'stopped'
  | 'timeout' | 'deadline' | 'cpu' | 'memory' | 'disposed';

export interface DispatchOutcome {
  instanceId: string;
  version: number;
  status: 'ok' | 'error' | 'timeout' | 'cpu' | 'memory' | 'dropped' | 'quarantined' | 'unloaded';
  /** set for every status but `ok` and `error` */
  reason?: DropReason;
  error?: string;
  cpuMs?: number;
  wallMs?: number;
  /** never entered the isolate (the instance stopped first): safe to deliver again */
  requeue?: boolean;
}
