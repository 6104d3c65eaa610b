/**
 * The in-isolate runtime, as source text. It runs before the plugin bundle, captures the two host
 * Callbacks (then removes them from the global), builds `ctx`, and completes with the entry
 * functions the host takes References to. It is not a security boundary: a plugin that tampers
 * with it only breaks itself, and the host treats everything coming out as untrusted JSON.
 *
 * Host contract (see plugin-sandbox.ts):
 *   __qqbotHostCall(id, capability, payloadJSON, eventSeq) -> null | refusal code   (sync Callback)
 *   __qqbotHostReport(kind, detailJSON)                                  (ignored Callback)
 *   __qqbotInit: JSON { bot, config, apiMethods: string[], payloadBytes, eventTypes: string[], events: string[] (the manifest's) }
 * Internal capabilities: `$done` (id = seq, payload = error | null), `$timer` ({ ms, repeat }),
 * `$clearTimer`. Entries: setup(seq), dispatch(seqs[], eventJSONs[]), settle(ids[], oks[],
 * valueJSONs[], eventSeqs[]), timer(id), snapshot() -> JSON string | '', restore(stateJSON).
 * `eventSeq` is the event the calling code serves (0: none), so calls are attributed to it.
 */
export const PRELUDE_FILENAME = 'qqbot:prelude';

export const PRELUDE_SOURCE = String.raw`(function () {
  'use strict';
  const g = globalThis;
  const hostCall = g.__qqbotHostCall;
  const hostReport = g.__qqbotHostReport;
  const init = JSON.parse(g.__qqbotInit);
  delete g.__qqbotHostCall;
  delete g.__qqbotHostReport;
  delete g.__qqbotInit;

  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const freeze = Object.freeze;
  const MessageFor = {
    E_PENDING_LIMIT: 'too many pending calls',
    E_PAYLOAD: 'payload too large',
    E_CAPABILITY: 'unknown capability',
    E_TIMER_LIMIT: 'too many timers',
    E_DISPOSED: 'plugin is being unloaded',
  };

  function deepFreeze(v) {
    if (v && typeof v === 'object') {
      freeze(v);
      for (const k of Object.keys(v)) deepFreeze(v[k]);
    }
    return v;
  }

  function makeError(env) {
    const e = new Error(String(env && env.message != null ? env.message : 'call failed'));
    e.code = String(env && env.code ? env.code : 'E_CALL');
    if (env) {
      for (const k of ['platformCode', 'status', 'traceId']) {
        const v = env[k];
        if (typeof v === 'number' || typeof v === 'string') e[k] = v;
      }
    }
    return e;
  }

  function describe(err) {
    const out = { name: 'Error', message: 'unprintable error', stack: '', code: '' };
    try {
      if (err instanceof Error) {
        out.name = String(err.name);
        out.message = String(err.message);
        out.stack = String(err.stack);
        if (err.code != null) out.code = String(err.code);
      } else {
        out.message = 'non-Error thrown: ' + String(err);
      }
    } catch (_) { /* getters that throw: keep the defaults */ }
    return out;
  }

  const pending = new Map();
  let nextCall = 1;
  // The event (seq) the code now running serves: calls are attributed to it. Entries may carry
  // several events; each is run in its own microtask step, after the previous one's microtasks.
  let current = 0;
  const resolvedPromise = Promise.resolve();
  const queueStep = (fn) => resolvedPromise.then(fn);
  function eachStep(count, each) {
    let i = 0;
    const step = () => {
      if (i >= count) { current = 0; return; }
      each(i++);
      queueStep(step);
    };
    step();
  }

  // Cycles and oversized strings are found before JSON.stringify, without calling getters (stringify
  // reads each property once): V8 14 (Node 26) spends ~60 ms building a circular-structure TypeError,
  // and stringifying a megabyte the host would refuse costs ~10 ms; either can outlast an entry.
  const ownKeys = Object.keys;
  const describeOwn = Object.getOwnPropertyDescriptor;
  const maxChars = init.payloadBytes;
  function precheck(root) {
    const path = new Set();
    let budget = 10000; // past this many objects, stringify and the host's size cap decide
    let chars = 0;
    function walk(v) {
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
  function toJson(v) {
    if (precheck(v) === 'cycle') throw new TypeError('Converting circular structure to JSON');
    return stringify(v);
  }

  function call(capability, payload) {
    const value = payload === undefined ? null : payload;
    const found = precheck(value);
    if (found === 'E_PAYLOAD') return Promise.reject(makeError({ code: 'E_PAYLOAD', message: capability + ': ' + MessageFor.E_PAYLOAD }));
    let json;
    try {
      if (found === 'cycle') throw new TypeError('Converting circular structure to JSON');
      json = stringify(value);
    } catch (e) {
      return Promise.reject(makeError({ code: 'E_INVALID_ARGUMENT', message: 'payload is not JSON: ' + describe(e).message }));
    }
    if (typeof json !== 'string') json = 'null';
    const id = nextCall++;
    const refusal = hostCall(id, capability, json, current);
    if (refusal !== null) return Promise.reject(makeError({ code: refusal, message: capability + ': ' + (MessageFor[refusal] || refusal) }));
    return new Promise((resolve, reject) => { pending.set(id, { resolve, reject }); });
  }

  function done(seq, err) {
    hostCall(seq, '$done', err == null ? 'null' : stringify(describe(err)));
  }

  function format(arg) {
    try {
      if (typeof arg === 'string') return arg;
      if (arg instanceof Error) return String(arg.stack || arg.message);
      if (arg === undefined) return 'undefined';
      if (typeof arg === 'function') return '[function]';
      const s = toJson(arg);
      return s === undefined ? String(arg) : s;
    } catch (_) {
      try { return String(arg); } catch (_) { return '[unprintable]'; }
    }
  }

  function log(level, args) {
    const parts = [];
    for (let i = 0; i < args.length && i < 16; i++) {
      const s = format(args[i]);
      parts.push(s.length > 4096 ? s.slice(0, 4096) + '…' : s);
    }
    hostReport('log', stringify([level, parts]));
  }

  const logger = freeze({
    debug: (...a) => log('debug', a),
    info: (...a) => log('info', a),
    warn: (...a) => log('warn', a),
    error: (...a) => log('error', a),
  });
  g.console = freeze({
    log: (...a) => log('info', a),
    info: (...a) => log('info', a),
    debug: (...a) => log('debug', a),
    warn: (...a) => log('warn', a),
    error: (...a) => log('error', a),
    trace: (...a) => log('debug', a),
  });

  // Timers exist only as host-managed entries: the isolate has no clock of its own.
  const timers = new Map();
  let nextTimer = 1;
  function addTimer(fn, ms, args, repeat) {
    if (typeof fn !== 'function') throw new TypeError('timer callback must be a function');
    const id = nextTimer++;
    const delay = Math.max(0, Number(ms) || 0);
    const refusal = hostCall(id, '$timer', stringify({ ms: delay, repeat }));
    if (refusal !== null) throw makeError({ code: refusal, message: MessageFor[refusal] || refusal });
    timers.set(id, { fn, args, repeat });
    return id;
  }
  function clearTimer(id) {
    if (timers.delete(id)) hostCall(id, '$clearTimer', 'null');
  }
  g.setTimeout = (fn, ms, ...args) => addTimer(fn, ms, args, false);
  g.setInterval = (fn, ms, ...args) => addTimer(fn, ms, args, true);
  g.clearTimeout = clearTimer;
  g.clearInterval = clearTimer;

  const handlers = new Map();
  const knownEvents = new Set(init.eventTypes);
  const declaredEvents = new Set(init.events);
  const api = {};
  for (const name of init.apiMethods) api[name] = (...args) => call('api.' + name, args);
  freeze(api);

  const ctx = freeze({
    bot: deepFreeze(init.bot),
    config: deepFreeze(init.config),
    logger,
    api,
    storage: freeze({
      get: (key) => call('storage.get', { key }).then((v) => (v === null ? undefined : v)),
      set: (key, value) => call('storage.set', { key, value }).then(() => undefined),
      delete: (key) => call('storage.delete', { key }).then((v) => v === true),
      keys: (prefix) => call('storage.keys', { prefix: prefix === undefined ? null : prefix }),
    }),
    on(type, handler) {
      if (typeof type !== 'string' || typeof handler !== 'function') throw new TypeError('ctx.on(type: string, handler: function)');
      // Here, not in the host or the test helper, so that both see the same refusal and warning.
      if (!knownEvents.has(type)) throw new TypeError('ctx.on(' + stringify(type.slice(0, 64)) + '): no such event type; valid: ' + init.eventTypes.join(', '));
      if (!declaredEvents.has(type)) log('warn', ['ctx.on(' + stringify(type) + '): ' + type + ' is not in package.json qqbot.events, so this handler never runs; add it there to receive it']);
      const list = handlers.get(type) || [];
      list.push(handler);
      handlers.set(type, list);
    },
    fetch(url, init) {
      return call('fetch', { url: String(url), init: init === undefined ? null : init }).then((r) => {
        const body = typeof r.body === 'string' ? r.body : '';
        return freeze({
          status: Number(r.status),
          headers: freeze(Object.assign({}, r.headers)),
          body,
          json: () => parse(body),
        });
      });
    },
  });

  function runAll(list, arg) {
    const runs = [];
    for (const h of list) {
      try { runs.push(Promise.resolve(h(arg))); } catch (e) { runs.push(Promise.reject(e)); }
    }
    return Promise.all(runs);
  }

  return {
    setup(seq) {
      current = seq;
      const mod = g.__plugin;
      const fn = mod && mod.default;
      if (typeof fn !== 'function') { done(seq, new TypeError('the plugin has no default export function')); return; }
      runAll([fn], ctx).then(() => done(seq, null), (e) => done(seq, e));
    },
    dispatch(seqs, jsons) {
      eachStep(seqs.length, (k) => {
        const seq = seqs[k];
        current = seq;
        const e = parse(jsons[k]);
        const ref = e.ref;
        const event = freeze({
          type: e.type,
          id: e.id,
          data: deepFreeze(e.data),
          shard: e.shard,
          transport: e.transport,
          reply: (body) => call('reply', { ref, body }),
          ack: (code) => call('ack', { ref, code: code === undefined ? 0 : code }).then(() => undefined),
        });
        runAll(handlers.get(e.type) || [], event).then(() => done(seq, null), (err) => done(seq, err));
      });
    },
    settle(ids, oks, jsons, seqs) {
      eachStep(ids.length, (k) => {
        const p = pending.get(ids[k]);
        if (!p) return;
        pending.delete(ids[k]);
        current = seqs[k];
        const value = parse(jsons[k]);
        if (oks[k]) p.resolve(value); else p.reject(makeError(value));
      });
    },
    timer(id) {
      const t = timers.get(id);
      if (!t) return;
      if (!t.repeat) timers.delete(id);
      try { t.fn.apply(undefined, t.args); } catch (e) { hostReport('error', stringify(describe(e))); }
    },
    snapshot() {
      const mod = g.__plugin;
      if (!mod || typeof mod.snapshot !== 'function') return '';
      const s = toJson(mod.snapshot());
      return typeof s === 'string' ? s : '';
    },
    restore(json) {
      const mod = g.__plugin;
      if (mod && typeof mod.restore === 'function') mod.restore(parse(json));
    },
  };
})()`;
