/**
 * What crosses between the host (plugin-sandbox.ts) and the prelude (prelude.ts) inside an isolate:
 * the globals the host sets, the two host Callbacks, the internal capabilities and the entry
 * functions the host takes References to. Both sides import this file, so each name is listed once.
 * It runs in the isolate too: no Node APIs, no imports.
 */

/** Globals the host sets before the prelude runs; the prelude takes them and deletes them. */
export const HOST_GLOBALS = {
  call: '__qqbotHostCall',
  report: '__qqbotHostReport',
  init: '__qqbotInit',
} as const;

/** The global esbuild's iife assigns the plugin bundle to (its exports: default, snapshot, restore). */
export const PLUGIN_GLOBAL = '__plugin';

/** `__qqbotInit`, as JSON. */
export interface PreludeInit {
  bot: unknown;
  config: unknown;
  apiMethods: readonly string[];
  /** the host's cap on one call's payload; the prelude refuses larger ones before stringifying */
  payloadBytes: number;
  /** every event type there is */
  eventTypes: readonly string[];
  /** the event types the manifest declares (the only ones delivered) */
  events: readonly string[];
}

/** Why the host refused a call at once; the prelude turns it into a rejected promise or a throw. */
export type RefusalCode = 'E_PENDING_LIMIT' | 'E_PAYLOAD' | 'E_CAPABILITY' | 'E_TIMER_LIMIT' | 'E_DISPOSED';

/**
 * Sync Callback. `eventSeq` is the event the calling code serves (0: none), so calls are
 * attributed to it. Internal capabilities: `$done` (id = seq, payload = error | null),
 * `$timer` ({ ms, repeat }), `$clearTimer`.
 */
export type HostCall = (id: number, capability: string, payloadJson: string, eventSeq?: number) => RefusalCode | null;

/** Ignored Callback: `log` ([level, parts]) and `error` (a described error). */
export type HostReport = (kind: 'log' | 'error', detailJson: string) => void;

export const INTERNAL_CAPABILITIES = {
  done: '$done',
  timer: '$timer',
  clearTimer: '$clearTimer',
} as const;

/** `$timer`'s payload. */
export interface TimerRequest {
  ms: number;
  repeat: boolean;
}

/** An error as it leaves the isolate (`$done`, `error` reports). */
export interface DescribedError {
  name: string;
  message: string;
  stack: string;
  code: string;
}

/** The prelude's completion value: the functions the host enters the isolate through. */
export interface PreludeEntries {
  setup(seq: number): void;
  /** `eventJsons[k]`: the event of `seqs[k]` as the main process made it */
  dispatch(seqs: number[], eventJsons: string[]): void;
  /** `valueJsons[k]`: the value when `oks[k]`, else the error envelope */
  settle(ids: number[], oks: boolean[], valueJsons: string[], eventSeqs: number[]): void;
  timer(id: number): void;
  /** the plugin's `snapshot()` as JSON, or '' when it has none */
  snapshot(): string;
  restore(stateJson: string): void;
}

export type EntryName = keyof PreludeEntries;

// one key per entry of PreludeEntries (a missing or extra one does not compile), in the order the host takes them
const ENTRIES: Record<EntryName, true> = { setup: true, dispatch: true, settle: true, timer: true, snapshot: true, restore: true };

/** The entries in the order the host takes them. */
export const ENTRY_NAMES = Object.keys(ENTRIES) as EntryName[];
