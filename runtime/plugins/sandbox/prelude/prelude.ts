/**
 * The in-isolate runtime. It runs before the plugin bundle, takes the two host Callbacks (then
 * removes them from the global), builds `ctx`, and completes with the entry functions the host
 * takes References to (see boundary.ts). It is not a security boundary: a plugin that tampers with
 * it only breaks itself, and the host treats everything coming out as untrusted JSON.
 *
 * Runs in an isolate, not in Node: its own tsconfig gives it ES2023 and no Node or DOM types.
 * prelude-script.ts bundles it into one script.
 */
import type { FetchInit, FetchResponse, PluginContext, PluginEvent, PluginLogger } from '../../../../sdk-types/context.ts';
import type { PluginApi } from '../../../../sdk-types/api.ts';
import {
  HOST_GLOBALS, INTERNAL_CAPABILITIES, PLUGIN_GLOBAL,
  type DescribedError, type HostCall, type HostReport, type PreludeEntries, type PreludeInit, type RefusalCode, type TimerRequest,
} from './boundary.ts';

type Handler = (arg: never) => unknown;
type Level = 'debug' | 'info' | 'warn' | 'error';

interface PluginExports {
  default?: unknown;
  snapshot?: unknown;
  restore?: unknown;
}

/** The isolate's global as the prelude sees it (the isolate has no console or timers of its own). */
interface IsolateGlobal {
  [HOST_GLOBALS.call]?: HostCall;
  [HOST_GLOBALS.report]?: HostReport;
  [HOST_GLOBALS.init]?: string;
  [PLUGIN_GLOBAL]?: PluginExports;
  console: Readonly<Record<'log' | 'info' | 'debug' | 'warn' | 'error' | 'trace', (...args: unknown[]) => void>>;
  setTimeout: (fn: unknown, ms?: unknown, ...args: unknown[]) => number;
  setInterval: (fn: unknown, ms?: unknown, ...args: unknown[]) => number;
  clearTimeout: (id: unknown) => void;
  clearInterval: (id: unknown) => void;
}

/** An error with the fields the host's envelope carries. */
interface CallError extends Error {
  code?: unknown;
  platformCode?: unknown;
  status?: unknown;
  traceId?: unknown;
}

/** What `__qqbotInit`'s event JSON holds (see instance.ts SandboxEvent). */
interface EventJson {
  type: string;
  id: string;
  data: unknown;
  shard?: number;
  transport: 'websocket' | 'webhook';
  ref: unknown;
}

const g = globalThis as unknown as IsolateGlobal;
const hostCall = g[HOST_GLOBALS.call] as HostCall;
const hostReport = g[HOST_GLOBALS.report] as HostReport;
const init = JSON.parse(g[HOST_GLOBALS.init] as string) as PreludeInit;
delete g[HOST_GLOBALS.call];
delete g[HOST_GLOBALS.report];
delete g[HOST_GLOBALS.init];

// Taken now: the plugin may replace the globals later.
const stringify = JSON.stringify;
const parse = JSON.parse;
const freeze = Object.freeze;
const ownKeys = Object.keys;
const describeOwn = Object.getOwnPropertyDescriptor;

const MessageFor: Record<RefusalCode, string> = {
  E_PENDING_LIMIT: 'too many pending calls',
  E_PAYLOAD: 'payload too large',
  E_CAPABILITY: 'unknown capability',
  E_TIMER_LIMIT: 'too many timers',
  E_DISPOSED: 'plugin is being unloaded',
};

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object') {
    freeze(v);
    for (const k of ownKeys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}

function makeError(env: unknown): CallError {
  const fields = (env && typeof env === 'object' ? env : {}) as Record<string, unknown>;
  const e: CallError = new Error(String(fields.message != null ? fields.message : 'call failed'));
  e.code = String(fields.code ? fields.code : 'E_CALL');
  for (const k of ['platformCode', 'status', 'traceId'] as const) {
    const v = fields[k];
    if (typeof v === 'number' || typeof v === 'string') e[k] = v;
  }
  return e;
}

function describe(err: unknown): DescribedError {
  const out: DescribedError = { name: 'Error', message: 'unprintable error', stack: '', code: '' };
  try {
    if (err instanceof Error) {
      out.name = String(err.name);
      out.message = String(err.message);
      out.stack = String(err.stack);
      const code = (err as CallError).code;
      if (code != null) out.code = String(code);
    } else {
      out.message = 'non-Error thrown: ' + String(err);
    }
  } catch {
    // getters that throw: keep the defaults
  }
  return out;
}

const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
let nextCall = 1;
// The event (seq) the code now running serves: calls are attributed to it. Entries may carry
// several events; each is run in its own microtask step, after the previous one's microtasks.
let current = 0;
const resolvedPromise = Promise.resolve();
function eachStep(count: number, each: (k: number) => void): void {
  let i = 0;
  const step = (): void => {
    if (i >= count) {
      current = 0;
      return;
    }
    each(i++);
    void resolvedPromise.then(step);
  };
  step();
}

// Cycles and oversized strings are found before JSON.stringify, without calling getters (stringify
// reads each property once): V8 14 (Node 26) spends ~60 ms building a circular-structure TypeError,
// and stringifying a megabyte the host would refuse costs ~10 ms; either can outlast an entry.
const maxChars = init.payloadBytes;
function precheck(root: unknown): 'E_PAYLOAD' | 'cycle' | null {
  const path = new Set<object>();
  let budget = 10000; // past this many objects, stringify and the host's size cap decide
  let chars = 0;
  function walk(v: unknown): 'E_PAYLOAD' | 'cycle' | null {
    if (typeof v === 'string') {
      chars += v.length;
      return chars > maxChars ? 'E_PAYLOAD' : null;
    }
    if (v === null || typeof v !== 'object') return null;
    if (path.has(v)) return 'cycle';
    if (--budget < 0) return null;
    path.add(v);
    for (const k of ownKeys(v)) {
      chars += k.length;
      const d = describeOwn(v, k);
      const found = d && 'value' in d ? walk(d.value) : null;
      if (found) return found;
    }
    path.delete(v);
    return null;
  }
  return walk(root);
}
function toJson(v: unknown): string | undefined {
  if (precheck(v) === 'cycle') throw new TypeError('Converting circular structure to JSON');
  return stringify(v) as string | undefined;
}

function call(capability: string, payload: unknown): Promise<unknown> {
  const value = payload === undefined ? null : payload;
  const found = precheck(value);
  if (found === 'E_PAYLOAD') return Promise.reject(makeError({ code: 'E_PAYLOAD', message: capability + ': ' + MessageFor.E_PAYLOAD }));
  let json: string | undefined;
  try {
    if (found === 'cycle') throw new TypeError('Converting circular structure to JSON');
    json = stringify(value) as string | undefined;
  } catch (e) {
    return Promise.reject(makeError({ code: 'E_INVALID_ARGUMENT', message: 'payload is not JSON: ' + describe(e).message }));
  }
  if (typeof json !== 'string') json = 'null';
  const id = nextCall++;
  const refusal = hostCall(id, capability, json, current);
  if (refusal !== null) return Promise.reject(makeError({ code: refusal, message: capability + ': ' + (MessageFor[refusal] || refusal) }));
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
  });
}

function done(seq: number, err: unknown): void {
  hostCall(seq, INTERNAL_CAPABILITIES.done, err == null ? 'null' : stringify(describe(err)));
}

function format(arg: unknown): string {
  try {
    if (typeof arg === 'string') return arg;
    if (arg instanceof Error) return String(arg.stack || arg.message);
    if (arg === undefined) return 'undefined';
    if (typeof arg === 'function') return '[function]';
    const s = toJson(arg);
    return s === undefined ? String(arg) : s;
  } catch {
    try {
      return String(arg);
    } catch {
      return '[unprintable]';
    }
  }
}

function log(level: Level, args: readonly unknown[]): void {
  const parts: string[] = [];
  for (let i = 0; i < args.length && i < 16; i++) {
    const s = format(args[i]);
    parts.push(s.length > 4096 ? s.slice(0, 4096) + '…' : s);
  }
  hostReport('log', stringify([level, parts]));
}

const logger: PluginLogger = freeze({
  debug: (...a: unknown[]) => log('debug', a),
  info: (...a: unknown[]) => log('info', a),
  warn: (...a: unknown[]) => log('warn', a),
  error: (...a: unknown[]) => log('error', a),
});
g.console = freeze({
  log: (...a: unknown[]) => log('info', a),
  info: (...a: unknown[]) => log('info', a),
  debug: (...a: unknown[]) => log('debug', a),
  warn: (...a: unknown[]) => log('warn', a),
  error: (...a: unknown[]) => log('error', a),
  trace: (...a: unknown[]) => log('debug', a),
});

// Timers exist only as host-managed entries: the isolate has no clock of its own.
const timers = new Map<number, { fn: (...args: unknown[]) => unknown; args: unknown[]; repeat: boolean }>();
let nextTimer = 1;
function addTimer(fn: unknown, ms: unknown, args: unknown[], repeat: boolean): number {
  if (typeof fn !== 'function') throw new TypeError('timer callback must be a function');
  const id = nextTimer++;
  const request: TimerRequest = { ms: Math.max(0, Number(ms) || 0), repeat };
  const refusal = hostCall(id, INTERNAL_CAPABILITIES.timer, stringify(request));
  if (refusal !== null) throw makeError({ code: refusal, message: MessageFor[refusal] || refusal });
  timers.set(id, { fn: fn as (...args: unknown[]) => unknown, args, repeat });
  return id;
}
function clearTimer(id: unknown): void {
  if (typeof id === 'number' && timers.delete(id)) hostCall(id, INTERNAL_CAPABILITIES.clearTimer, 'null');
}
g.setTimeout = (fn, ms, ...args) => addTimer(fn, ms, args, false);
g.setInterval = (fn, ms, ...args) => addTimer(fn, ms, args, true);
g.clearTimeout = clearTimer;
g.clearInterval = clearTimer;

const handlers = new Map<string, Handler[]>();
const knownEvents = new Set(init.eventTypes);
const declaredEvents = new Set(init.events);
const api: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
for (const name of init.apiMethods) api[name] = (...args) => call('api.' + name, args);
freeze(api);

interface FetchReply {
  status: unknown;
  headers: unknown;
  body: unknown;
}

const ctx: PluginContext = freeze({
  bot: deepFreeze(init.bot as PluginContext['bot']),
  config: deepFreeze(init.config as PluginContext['config']),
  logger,
  // one function per name in init.apiMethods: the SDK's PluginApi, by construction
  api: api as unknown as PluginApi,
  storage: freeze({
    get: (key: string) => call('storage.get', { key }).then((v) => (v === null ? undefined : v)) as Promise<never>,
    set: (key: string, value: unknown) => call('storage.set', { key, value }).then(() => undefined),
    delete: (key: string) => call('storage.delete', { key }).then((v) => v === true),
    keys: (prefix?: string) => call('storage.keys', { prefix: prefix === undefined ? null : prefix }) as Promise<string[]>,
  }),
  on(type: unknown, handler: unknown): void {
    if (typeof type !== 'string' || typeof handler !== 'function') throw new TypeError('ctx.on(type: string, handler: function)');
    // Here, not in the host or the test helper, so that both see the same refusal and warning.
    if (!knownEvents.has(type)) throw new TypeError('ctx.on(' + stringify(type.slice(0, 64)) + '): no such event type; valid: ' + init.eventTypes.join(', '));
    if (!declaredEvents.has(type)) log('warn', ['ctx.on(' + stringify(type) + '): ' + type + ' is not in package.json qqbot.events, so this handler never runs; add it there to receive it']);
    const list = handlers.get(type) || [];
    list.push(handler as Handler);
    handlers.set(type, list);
  },
  fetch(url: string, options?: FetchInit): Promise<FetchResponse> {
    return call('fetch', { url: String(url), init: options === undefined ? null : options }).then((reply) => {
      const r = reply as FetchReply;
      const body = typeof r.body === 'string' ? r.body : '';
      return freeze({
        status: Number(r.status),
        headers: freeze(Object.assign({}, r.headers) as Record<string, string>),
        body,
        json: () => parse(body),
      });
    });
  },
});

function runAll(list: readonly Handler[], arg: unknown): Promise<unknown> {
  const runs: Array<Promise<unknown>> = [];
  for (const h of list) {
    try {
      runs.push(Promise.resolve(h(arg as never)));
    } catch (e) {
      runs.push(Promise.reject(e));
    }
  }
  return Promise.all(runs);
}

/** The prelude's completion value (prelude-script.ts makes the script end with it). */
export const entries: PreludeEntries = {
  setup(seq) {
    current = seq;
    const fn = g[PLUGIN_GLOBAL]?.default;
    if (typeof fn !== 'function') {
      done(seq, new TypeError('the plugin has no default export function'));
      return;
    }
    runAll([fn as Handler], ctx).then(() => done(seq, null), (e: unknown) => done(seq, e));
  },
  dispatch(seqs, jsons) {
    eachStep(seqs.length, (k) => {
      const seq = seqs[k] as number;
      current = seq;
      const e = parse(jsons[k] as string) as EventJson;
      const ref = e.ref;
      const event: PluginEvent = freeze({
        type: e.type as PluginEvent['type'],
        id: e.id,
        data: deepFreeze(e.data as PluginEvent['data']),
        shard: e.shard,
        transport: e.transport,
        reply: (body: unknown) => call('reply', { ref, body }) as ReturnType<PluginEvent['reply']>,
        ack: (code?: number) => call('ack', { ref, code: code === undefined ? 0 : code }).then(() => undefined),
      });
      runAll(handlers.get(e.type) || [], event).then(() => done(seq, null), (err: unknown) => done(seq, err));
    });
  },
  settle(ids, oks, jsons, seqs) {
    eachStep(ids.length, (k) => {
      const id = ids[k] as number;
      const p = pending.get(id);
      if (!p) return;
      pending.delete(id);
      current = seqs[k] as number;
      const value: unknown = parse(jsons[k] as string);
      if (oks[k]) p.resolve(value);
      else p.reject(makeError(value));
    });
  },
  timer(id) {
    const t = timers.get(id);
    if (!t) return;
    if (!t.repeat) timers.delete(id);
    try {
      t.fn.apply(undefined, t.args); // called bare: `this` is not the timer's record
    } catch (e) {
      hostReport('error', stringify(describe(e)));
    }
  },
  snapshot() {
    const mod = g[PLUGIN_GLOBAL];
    if (!mod || typeof mod.snapshot !== 'function') return '';
    const s = toJson((mod.snapshot as () => unknown)());
    return typeof s === 'string' ? s : '';
  },
  restore(json) {
    const mod = g[PLUGIN_GLOBAL];
    if (mod && typeof mod.restore === 'function') (mod.restore as (state: unknown) => void)(parse(json));
  },
};
