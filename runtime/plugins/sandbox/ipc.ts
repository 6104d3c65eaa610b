/**
 * Messages between the main process (supervisor) and the plugin-host child. Tagged by `op`;
 * requests carry a `rid` that the answer repeats. Only JSON crosses.
 */
import type { CallResult, DispatchOutcome, PluginInstanceSpec, SandboxEvent } from '../instance.ts';

export type FailureKind = 'timeout' | 'cpu' | 'memory' | 'disposed';

/** main → host */
export type ToHost =
  | { op: 'load'; rid: number; spec: PluginInstanceSpec }
  | { op: 'unload'; rid: number; id: string }
  | { op: 'dispatch'; rid: number; id: string; event: SandboxEvent }
  | { op: 'result'; cid: number; result: CallResult }
  | { op: 'stop'; rid: number; graceMs: number };

/** host → main */
export type FromHost =
  | { op: 'ready' }
  | { op: 'heartbeat' }
  | { op: 'loaded'; rid: number; ok: true; version: number; loadMs: number }
  | { op: 'loaded'; rid: number; ok: false; message: string; location?: string; stack?: string }
  | { op: 'unloaded'; rid: number }
  | { op: 'outcome'; rid: number; outcome: DispatchOutcome; heapUsedBytes?: number }
  /** `eventRid`: the dispatch this call serves, so the supervisor knows the event had side effects */
  | { op: 'call'; cid: number; id: string; capability: string; payload: unknown; eventRid?: number }
  | { op: 'log'; id: string; level: LogLevel; args: string[] }
  | { op: 'plugin-error'; id: string; version: number; error: string }
  /** the instance broke a limit and was disposed; the supervisor decides about the restart */
  | { op: 'failed'; id: string; version: number; reason: FailureKind; message: string }
  | { op: 'stopped'; rid: number };

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Written synchronously to fd 4 by the host right before `process.abort()`: one JSON line. */
export interface LastWords {
  instanceId: string;
  message: string;
}

export const LAST_WORDS_FD = 4;
