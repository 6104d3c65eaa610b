/**
 * Main-process side of the sandbox: forks and watches the plugin-host child, routes events and
 * capability calls, and applies the restart, quarantine and host-crash policies. The host never
 * sees credentials; capabilities run here through `onCall`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';
import { silentLogger, type Logger } from '../../logging/logger.ts';
import type { CallResult, CapabilityHandler, DispatchOutcome, PluginInstanceSpec, SandboxEvent } from '../instance.ts';
import { LAST_WORDS_FD, type FromHost, type LastWords, type ToHost } from './ipc.ts';
import { PluginLoadError } from './plugin-load-error.ts';

export interface SupervisorOptions {
  onCall: CapabilityHandler;
  logger?: Logger;
  /** events held while the plugin host restarts (default 1000) */
  bufferLimit?: number;
  /** restart delay of a failed instance or a crashed host: doubles from min up to max */
  restartBackoffMs?: { min: number; max: number };
  /** more than `restarts` restarts within `windowMs` → quarantined */
  quarantine?: { restarts: number; windowMs: number };
  /**
   * no heartbeat for this long → the host is stuck: killed and restarted (default 10 s). Applies
   * from the host's `ready` on, reloads after a restart included; before `ready` the bound is
   * `max(heartbeatTimeoutMs, 30 s)`, since starting Node is slow on a busy machine.
   */
  heartbeatTimeoutMs?: number;
  /** how long an old version may drain after a swap or unload (default 5 s) */
  retireGraceMs?: number;
  /** bound on finishing in-flight work in `stop()` (default 5 s) */
  stopGraceMs?: number;
}

export type InstanceStatus = 'running' | 'restarting' | 'quarantined' | 'stopped';

export interface InstanceStats {
  id: string;
  version: number;
  status: InstanceStatus;
  events: number;
  errors: number;
  cpuMs: number;
  heapUsedBytes: number;
  restarts: number;
  lastError?: string;
}

interface InstanceRecord extends Omit<InstanceStats, 'id' | 'version' | 'lastError'> {
  spec: PluginInstanceSpec;
  /** times of recent failures, for the quarantine window */
  failures: number[];
  lastError: string | undefined;
  backoff: NodeJS.Timeout | undefined;
}

interface InFlight {
  id: string;
  event: SandboxEvent;
  resolve: (o: DispatchOutcome) => void;
  madeCall: boolean;
}

interface Buffered {
  id: string;
  event: SandboxEvent;
  resolve: (o: DispatchOutcome) => void;
}

type Reply = Extract<FromHost, { rid: number }>;

// .ts in a checkout, .js when installed from npm: the same extension as this module
const HOST_ENTRY = fileURLToPath(new URL(`./host-process${extname(fileURLToPath(import.meta.url))}`, import.meta.url));
const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Only what Node needs: the host must not inherit tokens from the environment. */
const ENV_ALLOW = ['PATH', 'HOME', 'TMPDIR', 'TMP', 'TEMP', 'LANG', 'TZ', 'NODE_ENV', 'SYSTEMROOT'];
const START_TIMEOUT_MS = 30_000;

/**
 * Events: `log` {instanceId, level, args}, `plugin-error` {instanceId, version, error},
 * `restarted` {instanceId, reason}, `quarantined` {instanceId, reason}, `host-spawned` {pid},
 * `host-crashed` {reason, culprit?}, `host-restarted`.
 */
export class PluginSupervisor extends EventEmitter {
  readonly #onCall: CapabilityHandler;
  readonly #logger: Logger;
  readonly #bufferLimit: number;
  readonly #backoff: { min: number; max: number };
  readonly #quarantine: { restarts: number; windowMs: number };
  readonly #heartbeatTimeoutMs: number;
  readonly #retireGraceMs: number;
  readonly #stopGraceMs: number;

  #child: ChildProcess | undefined;
  /** the current child said `ready`; its exits are crashes (before that, #spawn reports them) */
  #childReady = false;
  #up = false;
  #upWaiters: Array<(ok: boolean) => void> = [];
  #stopping = false;
  #lastBeat = 0;
  #watch: NodeJS.Timeout | undefined;
  #lastWords: LastWords | undefined;
  #hostCrashes: number[] = [];
  #hostRestart: NodeJS.Timeout | undefined;
  #killedAsStuck = false;

  #nextRid = 1;
  #requests = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void; id?: string }>();
  #inFlight = new Map<number, InFlight>();
  #buffer: Buffered[] = [];
  #instances = new Map<string, InstanceRecord>();

  constructor(options: SupervisorOptions) {
    super();
    this.#onCall = options.onCall;
    this.#logger = options.logger ?? silentLogger;
    this.#bufferLimit = options.bufferLimit ?? 1000;
    this.#backoff = options.restartBackoffMs ?? { min: 1000, max: 5 * 60_000 };
    this.#quarantine = options.quarantine ?? { restarts: 5, windowMs: 10 * 60_000 };
    this.#heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 10_000;
    this.#retireGraceMs = options.retireGraceMs ?? 5000;
    this.#stopGraceMs = options.stopGraceMs ?? 5000;
  }

  /** pid of the current plugin-host process (for metrics and operators) */
  get hostPid(): number | undefined {
    return this.#up ? this.#child?.pid : undefined;
  }

  async start(): Promise<void> {
    this.#stopping = false;
    this.#watch = setInterval(() => this.#checkHeartbeat(), Math.max(50, Math.min(1000, this.#heartbeatTimeoutMs / 4)));
    try {
      await this.#spawn();
    } catch (err) {
      clearInterval(this.#watch);
      throw err;
    }
    this.#markUp();
  }

  async load(spec: PluginInstanceSpec): Promise<{ version: number; loadMs: number }> {
    if (this.#stopping) throw new PluginLoadError(spec.id, spec.plugin, 'the supervisor is stopped');
    await this.#whenUp();
    const reply = await this.#request({ op: 'load', rid: 0, spec }, spec.id).catch((err: Error) => {
      throw new PluginLoadError(spec.id, spec.plugin, err.message);
    });
    if (reply.op !== 'loaded') throw new PluginLoadError(spec.id, spec.plugin, 'unexpected answer from the plugin host');
    if (!reply.ok) throw new PluginLoadError(spec.id, spec.plugin, reply.message, reply.location, reply.stack);
    let rec = this.#instances.get(spec.id);
    if (!rec) {
      rec = { spec, status: 'running', events: 0, errors: 0, cpuMs: 0, heapUsedBytes: 0, restarts: 0, failures: [], lastError: undefined, backoff: undefined };
      this.#instances.set(spec.id, rec);
    }
    // A new version is a fresh start, also for a quarantined instance.
    if (rec.backoff) clearTimeout(rec.backoff);
    rec.backoff = undefined;
    rec.spec = spec;
    rec.status = 'running';
    this.#logger.info({ plugin: spec.id, version: spec.version, loadMs: reply.loadMs }, 'plugin loaded');
    return { version: reply.version, loadMs: reply.loadMs };
  }

  async unload(id: string): Promise<void> {
    const rec = this.#instances.get(id);
    if (!rec) return;
    this.#instances.delete(id);
    if (rec.backoff) clearTimeout(rec.backoff);
    rec.status = 'stopped';
    for (let i = this.#buffer.length - 1; i >= 0; i--) {
      const b = this.#buffer[i]!;
      if (b.id === id) {
        this.#buffer.splice(i, 1);
        b.resolve(this.#outcome(rec.spec, 'unloaded', 'E_UNLOADED'));
      }
    }
    if (this.#up) await this.#request({ op: 'unload', rid: 0, id }).catch(() => undefined);
  }

  dispatch(id: string, event: SandboxEvent): Promise<DispatchOutcome> {
    const rec = this.#instances.get(id);
    if (!rec || rec.status === 'stopped' || this.#stopping) {
      return Promise.resolve({ instanceId: id, version: rec?.spec.version ?? 0, status: 'unloaded', error: 'E_UNLOADED' });
    }
    if (rec.status === 'quarantined') return Promise.resolve(this.#outcome(rec.spec, 'quarantined', rec.lastError ?? 'E_QUARANTINED'));
    if (rec.status === 'restarting') return Promise.resolve(this.#count(rec, this.#outcome(rec.spec, 'dropped', 'E_RESTARTING')));
    return new Promise<DispatchOutcome>((resolve) => {
      if (!this.#up) {
        if (this.#buffer.length >= this.#bufferLimit) {
          resolve(this.#count(rec, this.#outcome(rec.spec, 'dropped', 'E_BUFFER_FULL: plugin host restarting')));
          return;
        }
        this.#buffer.push({ id, event, resolve });
        return;
      }
      this.#send(id, event, resolve);
    });
  }

  stats(): InstanceStats[] {
    return [...this.#instances.values()].map((r) => {
      const s: InstanceStats = {
        id: r.spec.id, version: r.spec.version, status: r.status, events: r.events, errors: r.errors,
        cpuMs: r.cpuMs, heapUsedBytes: r.heapUsedBytes, restarts: r.restarts,
      };
      if (r.lastError !== undefined) s.lastError = r.lastError;
      return s;
    });
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#watch) clearInterval(this.#watch);
    if (this.#hostRestart) clearTimeout(this.#hostRestart);
    for (const rec of this.#instances.values()) {
      if (rec.backoff) clearTimeout(rec.backoff);
      rec.status = 'stopped';
    }
    for (const b of this.#buffer.splice(0)) b.resolve({ instanceId: b.id, version: 0, status: 'unloaded', error: 'E_STOPPED' });
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      if (this.#up) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          this.#request({ op: 'stop', rid: 0, graceMs: this.#stopGraceMs }).catch(() => undefined),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#stopGraceMs + 1000))),
        ]);
        clearTimeout(timer);
      }
      if (child.connected) child.disconnect();
      const killer = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(killer);
    }
    this.#up = false;
    this.#settleAll('unloaded', 'E_STOPPED');
    for (const w of this.#upWaiters.splice(0)) w(false);
  }

  // ---- host process --------------------------------------------------------------------------

  async #spawn(): Promise<void> {
    const env: NodeJS.ProcessEnv = {};
    for (const key of ENV_ALLOW) if (process.env[key] !== undefined) env[key] = process.env[key];
    env.QQBOT_HOST_RETIRE_GRACE_MS = String(this.#retireGraceMs);
    env.QQBOT_HOST_HEARTBEAT_MS = String(Math.max(20, Math.min(500, this.#heartbeatTimeoutMs / 5)));
    const child = fork(HOST_ENTRY, [], {
      cwd: PROJECT_ROOT,
      env,
      // isolated-vm requires it on Node 20+ (ivm#420); no loader: Node strips the types itself.
      execArgv: ['--no-node-snapshot'],
      serialization: 'json',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', 'pipe'],
    });
    this.#child = child;
    this.#childReady = false;
    this.#killedAsStuck = false;
    this.#lastWords = undefined;
    this.#lastBeat = Date.now();
    this.emit('host-spawned', { pid: child.pid });
    const words = child.stdio[LAST_WORDS_FD] as Readable | null;
    let text = '';
    words?.setEncoding('utf8');
    words?.on('data', (chunk: string) => {
      text += chunk;
      const line = text.split('\n')[0];
      if (line && text.includes('\n')) {
        try {
          this.#lastWords = JSON.parse(line) as LastWords;
        } catch {
          // not ours
        }
      }
    });
    const ready = new Promise<void>((resolve, reject) => {
      const onMessage = (m: FromHost): void => {
        if (m.op === 'ready') {
          child.off('message', onMessage);
          child.off('exit', onEarlyExit);
          if (child === this.#child) this.#childReady = true;
          resolve();
        }
      };
      const onEarlyExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        child.off('message', onMessage);
        reject(new Error(`plugin host exited during start (${signal ?? code})`));
      };
      child.on('message', onMessage);
      child.once('exit', onEarlyExit);
    });
    child.on('message', (m: FromHost) => this.#onMessage(child, m));
    child.on('exit', (code, signal) => {
      // The last-words pipe may still hold the culprit's line: read it before deciding.
      if (words && !words.readableEnded) words.once('end', () => this.#onExit(child, code, signal));
      else this.#onExit(child, code, signal);
    });
    child.on('error', (err) => this.#logger.error({ err: err.message }, 'plugin host process error'));
    await ready;
    this.#lastBeat = Date.now();
  }

  #markUp(): void {
    this.#up = true;
    this.#lastBeat = Date.now();
    for (const w of this.#upWaiters.splice(0)) w(true);
  }

  #whenUp(): Promise<void> {
    if (this.#up) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#upWaiters.push((ok) => (ok ? resolve() : reject(new Error('the supervisor stopped'))));
    });
  }

  // Not gated on #up: a host that hangs while it reloads plugins after a restart (not up yet) or
  // while it starts must be caught too, or the restart never completes and events wait forever.
  #checkHeartbeat(): void {
    const child = this.#child;
    if (!child || this.#stopping || this.#killedAsStuck || child.exitCode !== null || child.signalCode !== null) return;
    const limit = this.#childReady ? this.#heartbeatTimeoutMs : Math.max(this.#heartbeatTimeoutMs, START_TIMEOUT_MS);
    const silentMs = Date.now() - this.#lastBeat;
    if (silentMs > limit) {
      this.#logger.error({ silentMs, ready: this.#childReady }, 'plugin host stopped answering; killing it');
      this.#up = false;
      this.#killedAsStuck = true;
      child.kill('SIGKILL');
    }
  }

  #onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.#child) return;
    this.#up = false;
    // A host that never became ready is reported by #spawn's rejection (start() or #restartHost).
    if (this.#stopping || !this.#childReady) return;
    // Culprit: named by the host before it aborted, else the one instance that was executing.
    let culprit = this.#lastWords?.instanceId;
    // Without last words, blame the executing instance only when the host aborted or hung;
    // a kill from outside (operator, OOM killer) is nobody's fault.
    const stuck = this.#killedAsStuck;
    const blameBusy = stuck || signal === 'SIGABRT';
    this.#killedAsStuck = false;
    if (!culprit && blameBusy) {
      const busy = new Set([...this.#inFlight.values()].map((f) => f.id));
      for (const r of this.#requests.values()) if (r.id) busy.add(r.id);
      if (busy.size === 1) culprit = [...busy][0];
    }
    const reason = this.#lastWords
      ? `catastrophic error: ${this.#lastWords.message}`
      : stuck
        ? `plugin host stopped answering (no heartbeat for ${this.#heartbeatTimeoutMs} ms)`
        : `plugin host exited (${signal ?? `code ${code}`})`;
    this.#logger.error({ reason, culprit }, 'plugin host crashed');
    this.emit('host-crashed', culprit ? { reason, culprit } : { reason });

    for (const [rid, req] of this.#requests) {
      this.#requests.delete(rid);
      req.reject(new Error(reason));
    }
    // Events that had no side effect yet are delivered again after the restart; others are lost.
    const again: Buffered[] = [];
    for (const [rid, f] of [...this.#inFlight].sort((a, b) => a[0] - b[0])) {
      this.#inFlight.delete(rid);
      const rec = this.#instances.get(f.id);
      const spec = rec?.spec;
      if (f.id === culprit || !spec) f.resolve({ instanceId: f.id, version: spec?.version ?? 0, status: 'memory', error: `E_HOST_CRASHED: ${reason}` });
      else if (f.madeCall) f.resolve(this.#count(rec, this.#outcome(spec, 'dropped', `E_HOST_CRASHED: ${reason}`)));
      else again.push({ id: f.id, event: f.event, resolve: f.resolve });
    }
    this.#buffer.unshift(...again);
    if (culprit) {
      const rec = this.#instances.get(culprit);
      if (rec) this.#quarantineInstance(rec, `crashed the plugin host: ${reason}`);
    }

    this.#scheduleHostRestart();
  }

  /** The one place a host restart is scheduled: crashes and failed starts back off together. */
  #scheduleHostRestart(): void {
    if (this.#stopping) return;
    const now = Date.now();
    this.#hostCrashes = this.#hostCrashes.filter((t) => now - t < this.#quarantine.windowMs);
    this.#hostCrashes.push(now);
    const wait = Math.min(this.#backoff.max, this.#backoff.min * 2 ** (this.#hostCrashes.length - 1));
    if (this.#hostRestart) clearTimeout(this.#hostRestart);
    this.#hostRestart = setTimeout(() => void this.#restartHost(), wait);
  }

  async #restartHost(): Promise<void> {
    this.#hostRestart = undefined;
    if (this.#stopping) return;
    try {
      await this.#spawn();
    } catch (err) {
      this.#logger.error({ err: (err as Error).message }, 'plugin host failed to start');
      this.#scheduleHostRestart();
      return;
    }
    const child = this.#child;
    const reloads = [...this.#instances.values()].filter((r) => r.status === 'running');
    await Promise.all(reloads.map(async (rec) => {
      const reply = await this.#request({ op: 'load', rid: 0, spec: rec.spec }, rec.spec.id).catch(() => undefined);
      // The host dying (or being killed as stuck) mid-reload is handled by #onExit, not the plugin's failure.
      if (child !== this.#child || !child?.connected) return;
      if (!reply || reply.op !== 'loaded' || !reply.ok) {
        const detail = reply?.op === 'loaded' && !reply.ok ? `: ${reply.message}` : '';
        this.#onFailed(rec.spec.id, rec.spec.version, `reload after host restart failed${detail}`);
      }
    }));
    if (this.#stopping || !child || child !== this.#child || !child.connected) return;
    // Up only now: an event must not reach the new host before its plugin is back, nor overtake
    // the buffered ones (the flush below runs in this same tick).
    this.#markUp();
    this.#logger.info({ instances: reloads.length, buffered: this.#buffer.length }, 'plugin host restarted');
    this.emit('host-restarted');
    for (const b of this.#buffer.splice(0)) {
      const rec = this.#instances.get(b.id);
      if (!rec) b.resolve({ instanceId: b.id, version: 0, status: 'unloaded', error: 'E_UNLOADED' });
      else if (rec.status === 'quarantined') b.resolve(this.#outcome(rec.spec, 'quarantined', rec.lastError ?? 'E_QUARANTINED'));
      else if (rec.status !== 'running') b.resolve(this.#count(rec, this.#outcome(rec.spec, 'dropped', 'E_RESTARTING')));
      else this.#send(b.id, b.event, b.resolve);
    }
  }

  // ---- messages ------------------------------------------------------------------------------

  #send(id: string, event: SandboxEvent, resolve: (o: DispatchOutcome) => void): void {
    const rid = this.#nextRid++;
    this.#inFlight.set(rid, { id, event, resolve, madeCall: false });
    this.#post({ op: 'dispatch', rid, id, event });
  }

  #request(message: ToHost & { rid: number }, id?: string): Promise<Reply> {
    const rid = this.#nextRid++;
    return new Promise<Reply>((resolve, reject) => {
      this.#requests.set(rid, { resolve, reject, ...(id ? { id } : {}) });
      if (!this.#post({ ...message, rid } as ToHost)) {
        this.#requests.delete(rid);
        reject(new Error('plugin host is not running'));
      }
    });
  }

  #post(message: ToHost): boolean {
    const child = this.#child;
    if (!child || !child.connected) return false;
    child.send(message);
    return true;
  }

  #onMessage(child: ChildProcess, m: FromHost): void {
    if (child !== this.#child) return;
    switch (m.op) {
      case 'heartbeat':
      case 'ready':
        this.#lastBeat = Date.now();
        return;
      case 'outcome': {
        const f = this.#inFlight.get(m.rid);
        if (!f) return;
        this.#inFlight.delete(m.rid);
        const rec = this.#instances.get(f.id);
        if (rec) {
          if (m.heapUsedBytes) rec.heapUsedBytes = m.heapUsedBytes;
          this.#count(rec, m.outcome);
        }
        f.resolve(m.outcome);
        return;
      }
      case 'call':
        if (m.eventRid !== undefined) {
          const f = this.#inFlight.get(m.eventRid);
          if (f) f.madeCall = true;
        }
        void this.#call(child, m.cid, m.id, m.capability, m.payload);
        return;
      case 'log':
        this.emit('log', { instanceId: m.id, level: m.level, args: m.args });
        this.#logger[m.level]({ plugin: m.id, args: m.args }, 'plugin log');
        return;
      case 'plugin-error': {
        const rec = this.#instances.get(m.id);
        if (rec) rec.lastError = firstLine(m.error);
        this.emit('plugin-error', { instanceId: m.id, version: m.version, error: m.error });
        this.#logger.warn({ plugin: m.id, version: m.version, stack: m.error }, 'plugin error');
        return;
      }
      case 'failed':
        this.#onFailed(m.id, m.version, `${m.reason}: ${m.message}`);
        return;
      default: {
        const req = this.#requests.get(m.rid);
        if (!req) return;
        this.#requests.delete(m.rid);
        req.resolve(m);
      }
    }
  }

  async #call(child: ChildProcess, cid: number, id: string, capability: string, payload: unknown): Promise<void> {
    let result: CallResult;
    try {
      result = sanitize(await this.#onCall(id, capability, payload));
    } catch (err) {
      this.#logger.error({ plugin: id, capability, err: (err as Error)?.message }, 'capability handler threw');
      result = { ok: false, error: { code: 'E_INTERNAL', message: `${capability} failed` } };
    }
    // Answers for a host that has since died would land on the wrong call ids.
    if (child === this.#child) this.#post({ op: 'result', cid, result });
  }

  // ---- policies ------------------------------------------------------------------------------

  #onFailed(id: string, version: number, reason: string): void {
    const rec = this.#instances.get(id);
    if (!rec || rec.spec.version !== version || rec.status === 'quarantined' || rec.status === 'stopped') return;
    rec.lastError = reason;
    const now = Date.now();
    rec.failures = rec.failures.filter((t) => now - t < this.#quarantine.windowMs);
    rec.failures.push(now);
    if (rec.failures.length > this.#quarantine.restarts) {
      this.#quarantineInstance(rec, `${rec.failures.length} failures within ${this.#quarantine.windowMs} ms; last: ${reason}`);
      if (this.#up) void this.#request({ op: 'unload', rid: 0, id }).catch(() => undefined);
      return;
    }
    rec.status = 'restarting';
    const wait = Math.min(this.#backoff.max, this.#backoff.min * 2 ** (rec.failures.length - 1));
    this.#logger.warn({ plugin: id, reason, restartInMs: wait }, 'plugin stopped; restarting');
    rec.backoff = setTimeout(() => void this.#restart(rec, reason), wait);
  }

  async #restart(rec: InstanceRecord, reason: string): Promise<void> {
    rec.backoff = undefined;
    if (this.#stopping || rec.status !== 'restarting' || this.#instances.get(rec.spec.id) !== rec) return;
    try {
      await this.#whenUp();
    } catch {
      return;
    }
    const reply = await this.#request({ op: 'load', rid: 0, spec: rec.spec }, rec.spec.id).catch(() => undefined);
    if (rec.status !== 'restarting') return;
    if (reply && reply.op === 'loaded' && reply.ok) {
      rec.status = 'running';
      rec.restarts++;
      this.emit('restarted', { instanceId: rec.spec.id, reason });
      return;
    }
    this.#onFailed(rec.spec.id, rec.spec.version, reply && reply.op === 'loaded' && !reply.ok ? `restart failed: ${reply.message}` : 'restart failed');
  }

  #quarantineInstance(rec: InstanceRecord, reason: string): void {
    if (rec.backoff) clearTimeout(rec.backoff);
    rec.backoff = undefined;
    rec.status = 'quarantined';
    rec.lastError = reason;
    this.#logger.error({ plugin: rec.spec.id, reason }, 'plugin quarantined');
    this.emit('quarantined', { instanceId: rec.spec.id, reason });
  }

  #outcome(spec: PluginInstanceSpec, status: DispatchOutcome['status'], error?: string): DispatchOutcome {
    const o: DispatchOutcome = { instanceId: spec.id, version: spec.version, status };
    if (error !== undefined) o.error = error;
    return o;
  }

  #count(rec: InstanceRecord, o: DispatchOutcome): DispatchOutcome {
    rec.events++;
    rec.cpuMs += o.cpuMs ?? 0;
    if (o.status !== 'ok') {
      rec.errors++;
      if (o.error) rec.lastError = firstLine(o.error);
    }
    return o;
  }

  #settleAll(status: DispatchOutcome['status'], error: string): void {
    for (const [rid, f] of this.#inFlight) {
      this.#inFlight.delete(rid);
      f.resolve({ instanceId: f.id, version: this.#instances.get(f.id)?.spec.version ?? 0, status, error });
    }
    for (const [rid, req] of this.#requests) {
      this.#requests.delete(rid);
      req.reject(new Error('the supervisor stopped'));
    }
  }
}

/** Only JSON data and the documented error fields go back into a sandbox: never a host Error. */
function sanitize(result: CallResult): CallResult {
  if (result && result.ok === true) {
    try {
      const json = JSON.stringify(result.value ?? null);
      return { ok: true, value: json === undefined ? null : JSON.parse(json) };
    } catch {
      return { ok: false, error: { code: 'E_INTERNAL', message: 'capability result is not JSON' } };
    }
  }
  const e = (result && result.ok === false && result.error) || { code: 'E_INTERNAL', message: 'capability failed' };
  const error: { code: string; message: string; [k: string]: unknown } = { code: String(e.code), message: String(e.message) };
  if (typeof e.platformCode === 'number') error.platformCode = e.platformCode;
  if (typeof e.status === 'number') error.status = e.status;
  if (typeof e.traceId === 'string') error.traceId = e.traceId;
  return { ok: false, error };
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}
