/**
 * Messages between the main process (supervisor) and the plugin-host child. Tagged by `op`;
 * requests carry a `rid` that the answer repeats, capability calls a `cid`. Every message a side
 * sends within one tick travels as one IPC message (an array, see ipc-channel.ts). Event payloads and
 * call results cross as JSON text made once by the main process and parsed only inside the isolate.
 */
import type { DispatchOutcome, PluginInstanceSpec } from '../instance.ts';

export type FailureKind = 'timeout' | 'cpu' | 'memory' | 'disposed';

/** main → host */
export type ToHost =
  | { op: 'load'; rid: number; spec: PluginInstanceSpec }
  | { op: 'unload'; rid: number; id: string }
  | { op: 'stop'; rid: number; graceMs: number }
  /** an event's JSON, sent once per batch however many deliveries of that batch refer to it */
  | { op: 'event'; eid: number; type: string; json: string }
  /** event `eid` (defined earlier in the same batch) for instance `id`; answered by `outcome` */
  | { op: 'deliver'; rid: number; id: string; eid: number }
  /** `json`: the call's value when `ok`, else its `{ code, message, … }` error envelope */
  | { op: 'result'; cid: number; ok: boolean; json: string };

/** host → main */
export type FromHost =
  | { op: 'ready' }
  | { op: 'heartbeat' }
  | { op: 'loaded'; rid: number; ok: true; version: number; loadMs: number }
  | { op: 'loaded'; rid: number; ok: false; message: string; location?: string; stack?: string }
  | { op: 'unloaded'; rid: number }
  | { op: 'stopped'; rid: number }
  | { op: 'outcome'; rid: number; outcome: DispatchOutcome }
  /** `json` is the payload as the plugin made it; `eventRid`: the delivery it serves (it had side effects) */
  | { op: 'call'; cid: number; id: string; capability: string; json: string; eventRid?: number }
  | { op: 'log'; id: string; level: LogLevel; args: string[] }
  | { op: 'plugin-error'; id: string; version: number; error: string }
  /** the instance broke a limit and was disposed; the supervisor decides about the restart */
  | { op: 'failed'; id: string; version: number; reason: FailureKind; message: string }
  /** sampled, not sent after every event */
  | { op: 'heap'; id: string; usedBytes: number };

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Written synchronously to fd 4 by the host right before `process.abort()`: one JSON line. */
export interface LastWords {
  instanceId: string;
  message: string;
}

export const LAST_WORDS_FD = 4;
