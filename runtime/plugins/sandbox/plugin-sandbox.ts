/**
 * One version of one plugin instance: an isolate, one long-lived context, the prelude and the
 * bundle. Runs in the plugin-host child. Every entry into the isolate carries a timeout and runs
 * one at a time, with copied primitive arguments and primitive results; the only host functions
 * inside are two `ivm.Callback`s.
 *
 * Entries of a plugin that answers in well under a millisecond run on the host's own thread
 * (`applySync`: ~10 µs per event with its calls, against ~140 µs for an async `apply` and its
 * callbacks hopping threads). A plugin whose entries take longer runs on isolated-vm's thread pool
 * instead, so that it cannot hold up the others. A plugin switches between the two only between
 * entries: mixing them on one isolate deadlocks.
 */
import ivm from 'isolated-vm';
import { API_METHODS } from '../../../sdk-types/api.ts';
import { EVENT_TYPES } from '../../../sdk-types/event-types.ts';
import { QQBotError, type ErrorCode } from '../../errors.ts';
import { DEFAULT_LIMITS, type DispatchOutcome, type DropReason, type PluginInstanceSpec } from '../instance.ts';
import { DeadlineQueue } from './deadline-queue.ts';
import type { FailureKind, LogLevel } from './ipc.ts';
import { classifyIvmError } from './ivm-failure.ts';
import { ENTRY_NAMES, HOST_GLOBALS, INTERNAL_CAPABILITIES, type EntryName, type PreludeInit, type RefusalCode } from './prelude/boundary.ts';
import { PRELUDE_FILENAME, preludeScript } from './prelude-script.ts';
import { SandboxTimers } from './sandbox-timers.ts';
import { createStackMapper, type StackMapper } from './stack-mapper.ts';

export interface SandboxHooks {
  /** a capability call the plugin made; answer with `sandbox.settle([{ callId, ok, json }])` */
  call(sandbox: PluginSandbox, callId: number, capability: string, json: string, eventRid: number | undefined): void;
  log(level: LogLevel, args: string[]): void;
  pluginError(stack: string): void;
  /** the isolate broke a limit and is gone (`sandbox.failure` says why) */
  failed(sandbox: PluginSandbox): void;
  /** V8 lost control of the isolate: the host must abort */
  catastrophic(message: string): void;
  /** a sample of the isolate's heap use */
  heap(usedBytes: number): void;
}

export interface DispatchHandle {
  /** the dispatch entry has run: the next events may enter */
  entered: Promise<void>;
  /** one per event, in order */
  outcomes: Array<Promise<DispatchOutcome>>;
}

/** The load failed (bad code or setup threw); `location` is the plugin's own file:line. */
export class SandboxLoadFailure extends QQBotError {
  readonly location: string | undefined;
  readonly mappedStack: string;
  constructor(message: string, location: string | undefined, mappedStack: string) {
    super('E_PLUGIN_LOAD', message, location === undefined ? {} : { location });
    this.location = location;
    this.mappedStack = mappedStack;
  }
}

const FAILURE_CODES: Record<FailureKind, ErrorCode> = { timeout: 'E_TIMEOUT', cpu: 'E_CPU', memory: 'E_MEMORY', disposed: 'E_DISPOSED' };

// Budgets a plugin may need more of (timer count, background CPU) are PluginLimits. These are
// policy: they tell noise from abuse and are the same for every plugin.

/** Consecutive entry timeouts before the isolate counts as a runaway (a busy CPU can cause one). */
const TIMEOUT_STRIKES = 3;
/** Extra wall time after an async entry's own timeout before the host disposes the isolate (Screeps). */
const WATCHDOG_GRACE_MS = 2000;
/** The rolling window of `limits.backgroundCpuMs`. */
const BACKGROUND_WINDOW_MS = 10_000;
/** Log lines per second per instance; more are dropped. */
const LOG_RATE = 200;
/** Heap use above this share of memoryMb: restart at the next idle moment. */
const HEAP_RESTART_RATIO = 0.8;
/** An entry that timed out with the heap above this share of memoryMb ran into the memory limit. */
const HEAP_FULL_RATIO = 0.9;
/** An entry that timed out while the heap grew by more than this was allocating, not spinning. */
const HEAP_GROWTH_MB = 1;
/** The heap is sampled at most this often, and after at most this many events. */
const HEAP_SAMPLE_MS = 1000;
const HEAP_SAMPLE_EVENTS = 256;
/** An entry costing more CPU than this moves the plugin off the host's thread at once. */
const SYNC_ENTRY_MAX_NS = 2_000_000n;
/** Average CPU per event (ns) above which the plugin leaves the host's thread, and below which it returns. */
const SYNC_LEAVE_AVG_NS = 1_000_000;
const SYNC_RETURN_AVG_NS = 250_000;
/** An entry on the host's thread takes as many events as fit this much CPU, at most MAX_BATCH. */
const BATCH_BUDGET_NS = 1_000_000;
const MAX_BATCH = 16;
/** The design's cap on an onUnload/snapshot hand-off (docs/sandbox.md §8). */
const SNAPSHOT_MAX_CHARS = 256 * 1024;
const MB = 1024 * 1024;

interface EventState {
  seq: number;
  rid: number | undefined;
  type: string;
  startedAt: number;
  cpuNs: bigint;
  calls: Set<number>;
  finished: boolean;
  resolve: (o: DispatchOutcome) => void;
  /** setup is tracked like an event, without CPU budget */
  isSetup: boolean;
  /** unmapped error text from the plugin, for locating it in the source map */
  rawError?: string;
}

interface PendingCall {
  event: EventState | undefined;
  /** its result is queued for the settle entry */
  settling: boolean;
}

type EntryResult = { ok: true; value: unknown } | { ok: false; failure: ReturnType<typeof classifyIvmError>; message: string };
type Entry = ivm.Reference<(...args: unknown[]) => unknown>;

let nextSeq = 1;

export class PluginSandbox {
  readonly spec: PluginInstanceSpec;
  readonly #hooks: SandboxHooks;
  readonly #isolate: ivm.Isolate;
  readonly #mapper: StackMapper;
  readonly #timers: SandboxTimers;
  readonly #tails: DeadlineQueue<EventState>;
  #entries = new Map<EntryName, Entry>();
  /** where entries run: the host's thread, or isolated-vm's pool (always during load) */
  #onHostThread = false;
  /** average CPU an event costs an entry (EWMA, ns) */
  #eventCostNs = 0;
  /** async entries queued or running: the chain they run in */
  #chain: Promise<unknown> = Promise.resolve();
  #asyncEntries = 0;
  #inFlightEntries = 0;
  #current: EventState | undefined;
  #events = new Map<number, EventState>();
  #pending = new Map<number, PendingCall>();
  #strikes = 0;
  #dead = false;
  #failure: { reason: FailureKind; message: string } | undefined;
  #backgroundNs = 0n;
  #backgroundSince = Date.now();
  #logWindow = { since: 0, count: 0 };
  #restartAtIdle = false;
  #idleWaiters: Array<() => void> = [];
  #heapSampledAt = 0;
  #eventsSinceSample = 0;
  heapUsedBytes = 0;
  cpuNsTotal = 0n;

  private constructor(spec: PluginInstanceSpec, hooks: SandboxHooks) {
    this.spec = spec;
    this.#hooks = hooks;
    this.#mapper = createStackMapper(bundleFilename(spec), spec.sourceMap);
    this.#isolate = new ivm.Isolate({
      memoryLimit: spec.limits.memoryMb,
      onCatastrophicError: (message) => hooks.catastrophic(message),
    });
    this.#timers = new SandboxTimers(spec.limits.timers ?? DEFAULT_LIMITS.timers, async (id) => {
      const r = await this.#apply('timer', [id], this.spec.limits.entryTimeoutMs, []);
      if (!r.ok && r.failure === 'plugin') this.#reportError(r.message);
    });
    this.#tails = new DeadlineQueue((state) => this.#deadline(state), (state) => state.finished);
  }

  /** Builds the isolate, runs prelude, bundle and setup. Throws SandboxLoadFailure. */
  static async create(spec: PluginInstanceSpec, hooks: SandboxHooks): Promise<PluginSandbox> {
    // before the try: E_PRELUDE_BUILD is the runtime's fault, not to be wrapped as the plugin's load failure
    preludeScript();
    const sandbox = new PluginSandbox(spec, hooks);
    try {
      await sandbox.#load();
    } catch (err) {
      sandbox.dispose();
      if (err instanceof SandboxLoadFailure) throw err;
      const text = err instanceof Error ? `${err.message}\n${err.stack ?? ''}` : String(err);
      const kind = classifyIvmError(err);
      const message = kind === 'plugin' ? (err instanceof Error ? err.message : String(err)) : `${kind} while loading`;
      throw new SandboxLoadFailure(message, sandbox.#mapper.firstLocation(text), sandbox.#mapper.map(text));
    }
    return sandbox;
  }

  get disposed(): boolean {
    return this.#dead;
  }

  /** Why the isolate was disposed, when it broke a limit (undefined after a plain dispose). */
  get failure(): { reason: FailureKind; message: string } | undefined {
    return this.#failure;
  }

  async #load(): Promise<void> {
    const { spec } = this;
    const timeout = spec.limits.loadTimeoutMs;
    const context = await this.#isolate.createContext();
    const jail = context.global;
    await jail.set(HOST_GLOBALS.call, new ivm.Callback((id: unknown, cap: unknown, json: unknown, seq: unknown) => this.#hostCall(id, cap, json, seq)));
    await jail.set(HOST_GLOBALS.report, new ivm.Callback((kind: unknown, json: unknown) => this.#hostReport(kind, json), { ignored: true }));
    const init: PreludeInit = { bot: spec.bot, config: spec.config ?? {}, apiMethods: Object.keys(API_METHODS), payloadBytes: spec.limits.payloadBytes, eventTypes: EVENT_TYPES, events: spec.events };
    await jail.set(HOST_GLOBALS.init, JSON.stringify(init));
    jail.release();

    const prelude = await this.#isolate.compileScript(preludeScript(), { filename: PRELUDE_FILENAME });
    const entries = (await prelude.run(context, { reference: true, timeout })) as ivm.Reference<Record<string, unknown>>;
    prelude.release();
    // Taken before any plugin code runs: the plugin cannot swap them out from under the host.
    for (const name of ENTRY_NAMES) {
      this.#entries.set(name, (await entries.get(name, { reference: true })) as Entry);
    }
    entries.release();

    // loadTimeoutMs bounds top level and setup together; neither is charged to the background budget.
    const setup = this.#openEvent(undefined, 'setup', true);
    const finished = new Promise<DispatchOutcome>((resolve) => (setup.resolve = resolve));
    const loadTimer = setTimeout(() => this.#finish(setup, 'timeout', `top level and setup did not finish within ${timeout} ms`, 'timeout'), timeout);
    try {
      // `void 0` makes the completion value a primitive whatever the bundle ends with.
      const bundle = await this.#isolate.compileScript(`${spec.code}\n;void 0;`, { filename: bundleFilename(spec) });
      const ran = await this.#enterAsync(() => bundle.run(context, { timeout }), timeout, [setup]);
      bundle.release();
      if (!ran.ok) throw this.#loadFailure(ran.message, ran.failure);

      if (!setup.finished) {
        const entered = await this.#apply('setup', [setup.seq], timeout, [setup]);
        if (!entered.ok) this.#finish(setup, entered.failure === 'timeout' ? 'timeout' : 'error', entered.message, entered.failure === 'timeout' ? 'timeout' : undefined);
      }
      const outcome = await finished;
      if (outcome.status !== 'ok') throw this.#loadFailure(setup.rawError ?? outcome.error ?? 'setup failed', outcome.status);
    } finally {
      clearTimeout(loadTimer);
    }
  }

  #loadFailure(text: string, kind: string): SandboxLoadFailure {
    const mapped = this.#mapper.map(text);
    const headline = mapped.split('\n')[0] ?? mapped;
    return new SandboxLoadFailure(kind === 'plugin' || kind === 'error' ? headline : `${kind}: ${headline}`, this.#mapper.firstLocation(text), mapped);
  }

  /**
   * Events that may go into one entry now: several for a cheap plugin on the host's thread (an
   * entry's fixed cost, ~15–50 µs with its timeout, is then shared), one otherwise.
   */
  get batchLimit(): number {
    if (!this.#onHostThread) return 1;
    return Math.max(1, Math.min(MAX_BATCH, Math.floor(BATCH_BUDGET_NS / Math.max(this.#eventCostNs, 1000))));
  }

  /** `items[].json`: each event as the main process made it (parsed only inside the isolate). */
  dispatch(items: ReadonlyArray<{ json: string; type: string; rid: number | undefined }>): DispatchHandle {
    const states = items.map((item) => this.#openEvent(item.rid, item.type, false));
    const outcomes = states.map((state) => new Promise<DispatchOutcome>((resolve) => (state.resolve = resolve)));
    if (this.#dead) {
      for (const state of states) this.#finish(state, 'unloaded', 'E_DISPOSED', 'disposed');
      return { entered: Promise.resolve(), outcomes };
    }
    for (const state of states) this.#tails.push(state, state.startedAt + this.spec.limits.asyncTailMs);
    const args = [states.map((s) => s.seq), items.map((i) => i.json)];
    const entered = this.#apply('dispatch', args, this.spec.limits.entryTimeoutMs, states).then((r) => {
      if (!r.ok) {
        if (r.failure === 'timeout') for (const state of states) this.#finish(state, 'timeout', 'E_TIMEOUT: handler exceeded entryTimeoutMs', 'timeout');
        else if (r.failure === 'plugin') this.#reportError(r.message);
      }
      this.#eventsSinceSample += states.length;
      if (!this.#dead && (this.#eventsSinceSample >= HEAP_SAMPLE_EVENTS || performance.now() - this.#heapSampledAt >= HEAP_SAMPLE_MS)) this.#sampleHeap();
    });
    return { entered, outcomes };
  }

  /** Results of calls the plugin made; `json`: the value, or the error envelope. One entry for all of them. */
  settle(results: ReadonlyArray<{ callId: number; ok: boolean; json: string }>): void {
    if (this.#dead) return;
    const ids: number[] = [];
    const oks: boolean[] = [];
    const jsons: string[] = [];
    const seqs: number[] = [];
    const events = new Set<EventState>();
    for (const { callId, ok, json } of results) {
      const call = this.#pending.get(callId);
      if (!call || call.settling) continue;
      call.settling = true;
      const event = call.event && !call.event.finished ? call.event : undefined;
      call.event?.calls.delete(callId);
      if (event) events.add(event);
      ids.push(callId);
      oks.push(ok);
      jsons.push(json);
      seqs.push(event?.seq ?? 0);
    }
    if (ids.length === 0) return;
    const served = [...events];
    // The calls count against pendingCalls until the plugin has actually seen their results.
    void this.#apply('settle', [ids, oks, jsons, seqs], this.spec.limits.entryTimeoutMs, served, () => {
      for (const id of ids) this.#pending.delete(id);
    }).then((r) => {
      if (!r.ok && r.failure === 'plugin') this.#reportError(r.message);
      if (!r.ok && r.failure === 'timeout') for (const event of served) this.#finish(event, 'timeout', 'E_TIMEOUT: continuation exceeded entryTimeoutMs', 'timeout');
      this.#checkIdle();
    });
  }

  /** JSON state from the plugin's `snapshot()`, or undefined when it has none or it failed. */
  async snapshot(): Promise<string | undefined> {
    if (this.#dead) return undefined;
    const r = await this.#apply('snapshot', [], this.spec.limits.entryTimeoutMs, []);
    if (!r.ok) {
      if (r.failure === 'plugin') this.#reportError(`snapshot failed: ${r.message}`);
      return undefined;
    }
    if (typeof r.value !== 'string' || r.value === '') return undefined;
    if (r.value.length > SNAPSHOT_MAX_CHARS) {
      this.#hooks.log('warn', [`snapshot dropped: ${r.value.length} chars > ${SNAPSHOT_MAX_CHARS}`]);
      return undefined;
    }
    return r.value;
  }

  async restore(state: string): Promise<void> {
    const r = await this.#apply('restore', [state], this.spec.limits.entryTimeoutMs, []);
    if (!r.ok && r.failure === 'plugin') this.#reportError(`restore failed: ${r.message}`);
  }

  /** No more timers; wait until nothing is pending (or `graceMs`), then dispose. */
  async retire(graceMs: number): Promise<void> {
    this.#timers.stop();
    if (!this.#quiescent()) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.#idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.dispose();
  }

  dispose(): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#timers.stop();
    this.#tails.clear();
    for (const state of this.#events.values()) this.#finish(state, 'unloaded', 'E_DISPOSED: plugin unloaded', 'unloaded');
    this.#pending.clear();
    for (const ref of this.#entries.values()) ref.release();
    this.#entries.clear();
    if (!this.#isolate.isDisposed) this.#isolate.dispose();
    this.#notifyIdle();
  }

  // ---- entries -------------------------------------------------------------------------------

  /**
   * Runs one entry, serially with the others, and charges its CPU to the event it serves: on the
   * host's thread when the plugin is cheap and no async entry is pending, else in the async chain.
   * `begin` runs right before the entry does, whichever way it runs.
   */
  #apply(name: EntryName, args: unknown[], timeout: number, events: readonly EventState[], begin?: () => void): Promise<EntryResult> {
    if (this.#onHostThread && this.#asyncEntries === 0 && !this.#dead) {
      begin?.();
      const ref = this.#entries.get(name);
      return Promise.resolve(this.#run(() => {
        if (!ref) throw new Error('Isolate is disposed');
        return ref.applySync(undefined, args, { arguments: { copy: true }, timeout });
      }, events, false, timeout));
    }
    return this.#enterAsync(() => {
      const ref = this.#entries.get(name);
      if (!ref) throw new Error('Isolate is disposed');
      return ref.apply(undefined, args, { arguments: { copy: true }, timeout });
    }, timeout, events, begin);
  }

  #enterAsync(run: () => Promise<unknown>, timeout: number, events: readonly EventState[], begin?: () => void): Promise<EntryResult> {
    this.#asyncEntries++;
    const next = this.#chain.then(async (): Promise<EntryResult> => {
      begin?.();
      if (this.#dead) return { ok: false, failure: 'disposed', message: 'Isolate is disposed' };
      return this.#run(run, events, true, timeout);
    });
    this.#chain = next.then(() => undefined, () => undefined);
    return next.finally(() => {
      this.#asyncEntries--;
      this.#checkIdle();
    });
  }

  #run(run: () => unknown, events: readonly EventState[], async: true, timeout: number): Promise<EntryResult>;
  #run(run: () => unknown, events: readonly EventState[], async: false, timeout: number): EntryResult;
  #run(run: () => unknown, events: readonly EventState[], async: boolean, timeout: number): EntryResult | Promise<EntryResult> {
    this.#inFlightEntries++;
    this.#current = events[0];
    const before = this.#cpuNow();
    const done = (result: EntryResult): EntryResult => {
      this.#current = undefined;
      const cost = this.#cpuNow() - before;
      // a failure is judged first: a timeout spent collecting garbage at the memory limit is that
      // limit's doing, even when it also took the event past its CPU budget
      if (!result.ok) this.#onEntryFailure(result);
      else this.#strikes = 0;
      // an entry serving several events charges each an equal share
      const share = events.length > 1 ? cost / BigInt(events.length) : cost;
      if (events.length === 0) this.#charge(undefined, cost);
      for (const event of events) this.#charge(event, share);
      this.#placeEntries(cost, Math.max(1, events.length));
      this.#inFlightEntries--;
      if (!async) this.#checkIdle();
      return result;
    };
    const failed = (err: unknown): EntryResult => ({ ok: false, failure: classifyIvmError(err), message: err instanceof Error ? `${err.message}\n${err.stack ?? ''}` : String(err) });
    if (!async) {
      try {
        return done({ ok: true, value: run() });
      } catch (err) {
        return done(failed(err));
      }
    }
    const watchdog = setTimeout(() => this.#fail('disposed', 'entry stuck past its timeout; isolate disposed'), timeout + WATCHDOG_GRACE_MS);
    return (run() as Promise<unknown>).then(
      (value) => done({ ok: true, value }),
      (err: unknown) => done(failed(err)),
    ).finally(() => clearTimeout(watchdog));
  }

  /** Cheap entries run on the host's thread, costly ones on the pool (see the header comment). */
  #placeEntries(costNs: bigint, events: number): void {
    const perEvent = Number(costNs) / events;
    this.#eventCostNs = this.#eventCostNs === 0 ? perEvent : this.#eventCostNs * 0.8 + perEvent * 0.2;
    if (this.#onHostThread && (costNs > SYNC_ENTRY_MAX_NS || this.#eventCostNs > SYNC_LEAVE_AVG_NS)) this.#onHostThread = false;
    else if (!this.#onHostThread && this.#eventCostNs < SYNC_RETURN_AVG_NS) this.#onHostThread = true;
  }

  #cpuNow(): bigint {
    try {
      return this.#isolate.isDisposed ? 0n : this.#isolate.cpuTime;
    } catch {
      return 0n;
    }
  }

  #charge(event: EventState | undefined, deltaNs: bigint): void {
    if (deltaNs <= 0n) return;
    this.cpuNsTotal += deltaNs;
    if (event && !event.isSetup) {
      event.cpuNs += deltaNs;
      if (event.cpuNs > BigInt(this.spec.limits.cpuPerEventMs) * 1_000_000n) {
        this.#finish(event, 'cpu', `E_CPU: event used more than ${this.spec.limits.cpuPerEventMs} ms of CPU`, 'cpu');
        this.#fail('cpu', `event ${event.type} used more than ${this.spec.limits.cpuPerEventMs} ms of CPU`);
      }
      return;
    }
    if (event?.isSetup) return;
    const now = Date.now();
    if (now - this.#backgroundSince > BACKGROUND_WINDOW_MS) {
      this.#backgroundSince = now;
      this.#backgroundNs = 0n;
    }
    this.#backgroundNs += deltaNs;
    const budget = this.spec.limits.backgroundCpuMs ?? DEFAULT_LIMITS.backgroundCpuMs;
    if (this.#backgroundNs > BigInt(budget) * 1_000_000n) {
      this.#fail('cpu', `more than ${budget} ms of CPU outside events within ${BACKGROUND_WINDOW_MS} ms`);
    }
  }

  #onEntryFailure(result: Extract<EntryResult, { ok: false }>): void {
    if (result.failure === 'timeout') {
      // Near its memoryLimit V8 collects garbage for longer than an entry may run (seen with isolated-vm
      // 7): a timeout while the heap fills up is the memory limit's doing, so it is left to (and
      // reported as) the memory limit rather than counted as a runaway's strike.
      const heapMb = this.#heapUsedMb();
      const limitMb = this.spec.limits.memoryMb;
      const grew = heapMb - this.heapUsedBytes / MB > HEAP_GROWTH_MB;
      this.heapUsedBytes = heapMb * MB;
      if (heapMb >= limitMb * HEAP_FULL_RATIO) {
        this.#fail('memory', `isolate at its memory limit (${heapMb.toFixed(1)} of ${limitMb} MB); its entries timed out collecting garbage`);
      } else if (!grew && ++this.#strikes >= TIMEOUT_STRIKES) {
        this.#fail('timeout', `${this.#strikes} consecutive entries timed out`);
      }
    } else if (result.failure === 'memory') {
      this.#fail('memory', 'isolate exceeded its memory limit');
    } else if (result.failure === 'disposed') {
      this.#fail('disposed', result.message.split('\n')[0] ?? 'isolate disposed');
    }
  }

  #heapUsedMb(): number {
    try {
      const stats = this.#isolate.getHeapStatisticsSync();
      return (stats.used_heap_size + stats.externally_allocated_size) / MB;
    } catch {
      return 0; // disposed
    }
  }

  #fail(reason: FailureKind, message: string): void {
    if (this.#dead) return;
    this.#failure = { reason, message };
    const status = reason === 'disposed' ? 'error' : reason;
    for (const state of this.#events.values()) this.#finish(state, status, `${FAILURE_CODES[reason]}: ${message}`, reason);
    this.dispose();
    this.#hooks.failed(this);
  }

  // ---- events --------------------------------------------------------------------------------

  #openEvent(rid: number | undefined, type: string, isSetup: boolean): EventState {
    const state: EventState = {
      seq: nextSeq++, rid, type, startedAt: performance.now(), cpuNs: 0n, calls: new Set(), finished: false,
      resolve: () => {}, isSetup,
    };
    this.#events.set(state.seq, state);
    return state;
  }

  #finish(state: EventState, status: DispatchOutcome['status'], error?: string, reason?: DropReason): void {
    if (state.finished) return;
    state.finished = true;
    this.#events.delete(state.seq);
    const outcome: DispatchOutcome = {
      instanceId: this.spec.id,
      version: this.spec.version,
      status,
      cpuMs: Number(state.cpuNs) / 1e6,
      wallMs: performance.now() - state.startedAt,
    };
    if (reason !== undefined) outcome.reason = reason;
    if (error !== undefined) outcome.error = error;
    state.resolve(outcome);
    this.#checkIdle();
  }

  /** Async tail over: the event's pending calls settle with E_DEADLINE inside the plugin. */
  #deadline(state: EventState): void {
    const json = JSON.stringify({ code: 'E_DEADLINE', message: 'the event\'s async tail ran out of time' });
    this.settle([...state.calls].map((callId) => ({ callId, ok: false, json })));
    this.#finish(state, 'timeout', `E_DEADLINE: handler did not finish within ${this.spec.limits.asyncTailMs} ms`, 'deadline');
  }

  #sampleHeap(): void {
    this.#heapSampledAt = performance.now();
    this.#eventsSinceSample = 0;
    const record = (used: number): void => {
      this.heapUsedBytes = used;
      this.#hooks.heap(used);
      if (used > this.spec.limits.memoryMb * MB * HEAP_RESTART_RATIO) this.#restartAtIdle = true;
      this.#checkIdle();
    };
    if (this.#onHostThread) return record(this.#heapUsedMb() * MB);
    this.#isolate.getHeapStatistics().then((stats) => record(stats.used_heap_size + stats.externally_allocated_size), () => undefined);
  }

  // ---- host functions (run on the Node thread while the isolate waits) ------------------------

  #hostCall(id: unknown, capability: unknown, json: unknown, seq?: unknown): RefusalCode | null {
    if (this.#dead) return 'E_DISPOSED';
    if (typeof id !== 'number' || typeof capability !== 'string' || typeof json !== 'string') return 'E_CAPABILITY';
    switch (capability) {
      case INTERNAL_CAPABILITIES.done: {
        const state = this.#events.get(id);
        if (state) {
          const err = json === 'null' ? undefined : parseError(json);
          if (err) {
            const mapped = this.#mapper.map(err);
            state.rawError = err;
            if (!state.isSetup) this.#hooks.pluginError(mapped);
            this.#finish(state, 'error', mapped);
          } else {
            this.#finish(state, 'ok');
          }
        }
        return null;
      }
      case INTERNAL_CAPABILITIES.timer:
        return this.#timers.set(id, json);
      case INTERNAL_CAPABILITIES.clearTimer:
        this.#timers.clear(id);
        return null;
    }
    if (!isCapability(capability)) return 'E_CAPABILITY';
    if (this.#pending.size >= this.spec.limits.pendingCalls) return 'E_PENDING_LIMIT';
    if (Buffer.byteLength(json) > this.spec.limits.payloadBytes) return 'E_PAYLOAD';
    // the prelude says which event the calling code serves; the entry's own event otherwise
    const named = typeof seq === 'number' && seq > 0 ? this.#events.get(seq) : undefined;
    const candidate = named ?? this.#current;
    const event = candidate && !candidate.finished && !candidate.isSetup ? candidate : undefined;
    this.#pending.set(id, { event, settling: false });
    event?.calls.add(id);
    // Leave the callback at once: the isolate waits while we are in here.
    queueMicrotask(() => this.#hooks.call(this, id, capability, json, event?.rid));
    return null;
  }

  #hostReport(kind: unknown, json: unknown): void {
    if (this.#dead || typeof json !== 'string' || json.length > 80_000) return;
    const now = Date.now();
    if (now - this.#logWindow.since > 1000) this.#logWindow = { since: now, count: 0 };
    if (++this.#logWindow.count > LOG_RATE) return;
    try {
      if (kind === 'log') {
        const [level, args] = JSON.parse(json) as [unknown, unknown];
        if (!Array.isArray(args)) return;
        const lvl: LogLevel = level === 'debug' || level === 'warn' || level === 'error' ? level : 'info';
        this.#hooks.log(lvl, args.map((a) => this.#mapper.map(String(a))));
      } else if (kind === 'error') {
        const err = parseError(json);
        if (err) this.#reportError(err);
      }
    } catch {
      // untrusted text: ignore what does not parse
    }
  }

  #reportError(text: string): void {
    this.#hooks.pluginError(this.#mapper.map(text));
  }

  #quiescent(): boolean {
    return this.#inFlightEntries === 0 && this.#asyncEntries === 0 && this.#pending.size === 0 && this.#events.size === 0;
  }

  #checkIdle(): void {
    if (this.#dead) return this.#notifyIdle();
    if (!this.#quiescent()) return;
    if (this.#restartAtIdle) {
      this.#restartAtIdle = false;
      this.#fail('memory', `heap above ${HEAP_RESTART_RATIO * 100}% of ${this.spec.limits.memoryMb} MB`);
      return;
    }
    this.#notifyIdle();
  }

  #notifyIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }
}

export function bundleFilename(spec: PluginInstanceSpec): string {
  return `${spec.filename}.bundle.js`;
}

const CAPABILITY = /^(api\.[A-Za-z]+|reply|ack|storage\.(get|set|delete|keys)|fetch)$/;
function isCapability(name: string): boolean {
  if (!CAPABILITY.test(name)) return false;
  return !name.startsWith('api.') || Object.hasOwn(API_METHODS, name.slice(4));
}

function parseError(json: string): string | undefined {
  try {
    const e = JSON.parse(json) as { name?: unknown; message?: unknown; stack?: unknown; code?: unknown };
    const stack = typeof e.stack === 'string' && e.stack ? e.stack : `${String(e.name)}: ${String(e.message)}`;
    return e.code ? `${stack}\n    code: ${String(e.code)}` : stack;
  } catch {
    return undefined;
  }
}
