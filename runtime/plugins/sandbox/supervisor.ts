/**
 * Main-process side of the sandbox: keeps each plugin instance's backlog, feeds the plugin host a
 * few events per instance at a time over the batched channel, runs the capability calls that come
 * back, and applies the restart and quarantine policies to failed instances and a crashed host.
 * The host never sees credentials; capabilities run here through `onCall`.
 */
import { EventEmitter } from 'node:events';
import { silentLogger, type Logger } from '../../logging/logger.ts';
import type { CallResult, CapabilityHandler, DispatchOutcome, DropReason, PluginInstanceSpec, SandboxEvent } from '../instance.ts';
import { PendingRequests } from './ipc-channel.ts';
import { HostProcess, type HostExit } from './host-process-handle.ts';
import { InstanceQueue, type Queued, type SharedEvent } from './instance-queue.ts';
import type { FromHost, ToHost } from './ipc.ts';
import { PluginLoadError } from './plugin-load-error.ts';
import { DEFAULT_RESTART_POLICY, RestartPolicy, type RestartPolicyOptions } from './restart-policy.ts';

export interface SupervisorOptions {
  onCall: CapabilityHandler;
  logger?: Logger;
  /** restart delay of a failed instance or a crashed host: doubles from min up to max */
  restartBackoffMs?: { min: number; max: number };
  /** more than `restarts` restarts within `windowMs` → quarantined */
  quarantine?: { restarts: number; windowMs: number };
  /** without a failure for this long, the restart backoff starts from `min` again (default 60 s) */
  stableMs?: number;
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
  /** events waiting in the backlog, and their size */
  queued: number;
  queuedBytes: number;
  /** events this instance did not handle, by reason */
  dropped: Partial<Record<DropReason, number>>;
  lastError?: string;
}

export interface SupervisorEvents {
  log: [entry: { instanceId: string; level: string; args: string[] }];
  'plugin-error': [entry: { instanceId: string; version: number; error: string }];
  restarted: [entry: { instanceId: string; reason: string }];
  quarantined: [entry: { instanceId: string; reason: string }];
  'host-spawned': [entry: { pid: number }];
  /** `kind`: a bounded label (catastrophic V8 error, stopped answering, exited or killed) */
  'host-crashed': [entry: { reason: string; kind: 'catastrophic' | 'stuck' | 'exited'; culprit?: string }];
  'host-restarted': [];
}

interface InstanceRecord extends Omit<InstanceStats, 'id' | 'version' | 'lastError' | 'queued' | 'queuedBytes'> {
  spec: PluginInstanceSpec;
  lastError: string | undefined;
  queue: InstanceQueue;
  /** deliveries sent to the host and not answered yet */
  inHost: number;
  policy: RestartPolicy;
  backoff: NodeJS.Timeout | undefined;
}

interface InFlight {
  rec: InstanceRecord;
  item: Queued;
  /** the handler called a capability: delivering it again could repeat a side effect */
  madeCall: boolean;
}

type Answer = Extract<FromHost, { op: 'loaded' | 'unloaded' | 'stopped' }>;

/** Deliveries an instance may have in the host at once, beyond which events wait in its backlog. */
function windowOf(spec: PluginInstanceSpec): number {
  return Math.max(8, spec.limits.concurrentEvents * 2);
}

export class PluginSupervisor extends EventEmitter<SupervisorEvents> {
  readonly #onCall: CapabilityHandler;
  readonly #logger: Logger;
  readonly #policy: RestartPolicyOptions;
  readonly #heartbeatTimeoutMs: number;
  readonly #retireGraceMs: number;
  readonly #stopGraceMs: number;
  readonly #hostPolicy: RestartPolicy;

  #host: HostProcess | undefined;
  /** the host is ready and its instances are loaded: deliveries may go */
  #up = false;
  #upWaiters: Array<(ok: boolean) => void> = [];
  #stopping = false;
  #hostRestart: NodeJS.Timeout | undefined;
  #lastCrash: string | undefined;
  #nextEid = 1;
  #nextRid = 1;
  readonly #requests = new PendingRequests<Answer, string | undefined>();
  readonly #inFlight = new Map<number, InFlight>();
  readonly #instances = new Map<string, InstanceRecord>();

  constructor(options: SupervisorOptions) {
    super();
    this.#onCall = options.onCall;
    this.#logger = options.logger ?? silentLogger;
    this.#policy = {
      backoffMs: options.restartBackoffMs ?? DEFAULT_RESTART_POLICY.backoffMs,
      quarantine: options.quarantine ?? DEFAULT_RESTART_POLICY.quarantine,
      stableMs: options.stableMs ?? DEFAULT_RESTART_POLICY.stableMs,
    };
    this.#hostPolicy = new RestartPolicy(this.#policy);
    this.#heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 10_000;
    this.#retireGraceMs = options.retireGraceMs ?? 5000;
    this.#stopGraceMs = options.stopGraceMs ?? 5000;
  }

  /** pid of the current plugin-host process (for metrics and operators) */
  get hostPid(): number | undefined {
    return this.#up ? this.#host?.pid : undefined;
  }

  async start(): Promise<void> {
    this.#stopping = false;
    this.#host = await this.#spawn();
    this.#markUp();
  }

  async load(spec: PluginInstanceSpec): Promise<{ version: number; loadMs: number }> {
    if (this.#stopping) throw new PluginLoadError(spec.id, spec.plugin, 'the supervisor is stopped');
    await this.#whenUp();
    const reply = await this.#request({ op: 'load', spec }, spec.id).catch((err: Error) => {
      throw new PluginLoadError(spec.id, spec.plugin, err.message);
    });
    if (reply.op !== 'loaded') throw new PluginLoadError(spec.id, spec.plugin, 'unexpected answer from the plugin host');
    if (!reply.ok) throw new PluginLoadError(spec.id, spec.plugin, reply.message, reply.location, reply.stack);
    let rec = this.#instances.get(spec.id);
    if (!rec) {
      rec = {
        spec, status: 'running', events: 0, errors: 0, cpuMs: 0, heapUsedBytes: 0, restarts: 0, dropped: {}, lastError: undefined,
        queue: new InstanceQueue(spec.limits.queueBytes), inHost: 0, policy: new RestartPolicy(this.#policy), backoff: undefined,
      };
      this.#instances.set(spec.id, rec);
    }
    // A new version is a fresh start, also for a quarantined instance.
    if (rec.backoff) clearTimeout(rec.backoff);
    rec.backoff = undefined;
    rec.spec = spec;
    rec.queue.limitBytes = spec.limits.queueBytes;
    rec.status = 'running';
    rec.policy.reset();
    this.#logger.info({ plugin: spec.id, version: spec.version, loadMs: reply.loadMs }, 'plugin loaded');
    this.#pump(rec);
    return { version: reply.version, loadMs: reply.loadMs };
  }

  async unload(id: string): Promise<void> {
    const rec = this.#instances.get(id);
    if (!rec) return;
    this.#instances.delete(id);
    if (rec.backoff) clearTimeout(rec.backoff);
    rec.status = 'stopped';
    rec.queue.drain(() => this.#outcome(rec, 'unloaded', 'unloaded', 'E_UNLOADED'));
    if (this.#up) await this.#request({ op: 'unload', id }).catch(() => undefined);
  }

  /** The JSON an event crosses the boundary as: made once, however many plugins it goes to. */
  share(event: SandboxEvent): SharedEvent {
    const json = JSON.stringify(event);
    return { eid: this.#nextEid++, type: event.type, json, bytes: Buffer.byteLength(json) };
  }

  dispatch(id: string, event: SandboxEvent): Promise<DispatchOutcome> {
    return this.deliver(this.share(event), [id])[0]!;
  }

  /** Hands one event to each of `ids`; every promise settles with that instance's outcome. */
  deliver(event: SharedEvent, ids: readonly string[]): Array<Promise<DispatchOutcome>> {
    return ids.map((id) => new Promise<DispatchOutcome>((resolve) => {
      const rec = this.#instances.get(id);
      if (!rec || rec.status === 'stopped' || this.#stopping) {
        resolve({ instanceId: id, version: rec?.spec.version ?? 0, status: 'unloaded', reason: this.#stopping ? 'stopped' : 'unloaded', error: 'E_UNLOADED' });
        return;
      }
      if (rec.status === 'quarantined') return resolve(this.#count(rec, this.#outcome(rec, 'quarantined', 'quarantined', rec.lastError ?? 'E_QUARANTINED')));
      if (event.bytes > rec.spec.limits.payloadBytes) {
        return resolve(this.#count(rec, this.#outcome(rec, 'dropped', 'payload_too_large', `E_PAYLOAD: event of ${event.bytes} bytes is larger than payloadBytes`)));
      }
      if (!rec.queue.push({ event, resolve })) {
        return resolve(this.#count(rec, this.#outcome(rec, 'dropped', 'backlog_full', `E_BACKLOG_FULL: ${rec.queue.length} events (${rec.queue.bytes} bytes) already wait; queueBytes is ${rec.queue.limitBytes}`)));
      }
      this.#pump(rec);
    }));
  }

  stats(): InstanceStats[] {
    return [...this.#instances.values()].map((r) => {
      const s: InstanceStats = {
        id: r.spec.id, version: r.spec.version, status: r.status, events: r.events, errors: r.errors, cpuMs: r.cpuMs,
        heapUsedBytes: r.heapUsedBytes, restarts: r.restarts, queued: r.queue.length, queuedBytes: r.queue.bytes, dropped: { ...r.dropped },
      };
      if (r.lastError !== undefined) s.lastError = r.lastError;
      return s;
    });
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#hostRestart) clearTimeout(this.#hostRestart);
    for (const rec of this.#instances.values()) {
      if (rec.backoff) clearTimeout(rec.backoff);
      rec.status = 'stopped';
      rec.queue.drain(() => this.#outcome(rec, 'unloaded', 'stopped', 'E_STOPPED'));
    }
    const host = this.#host;
    if (host?.alive) {
      if (this.#up) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          this.#request({ op: 'stop', graceMs: this.#stopGraceMs }).catch(() => undefined),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#stopGraceMs + 1000))),
        ]);
        clearTimeout(timer);
      }
      host.disconnect();
      await host.close(2000);
    }
    this.#up = false;
    for (const [rid, f] of this.#inFlight) {
      this.#inFlight.delete(rid);
      f.item.resolve(this.#outcome(f.rec, 'unloaded', 'stopped', 'E_STOPPED'));
    }
    this.#requests.failAll(new Error('the supervisor stopped'));
    for (const w of this.#upWaiters.splice(0)) w(false);
  }

  // ---- host process --------------------------------------------------------------------------

  #spawn(): Promise<HostProcess> {
    let host: HostProcess | undefined;
    return HostProcess.spawn({
      heartbeatTimeoutMs: this.#heartbeatTimeoutMs,
      retireGraceMs: this.#retireGraceMs,
      onSpawn: (pid) => this.emit('host-spawned', { pid }),
      onMessage: (message) => this.#onMessage(host, message),
      onExit: (exit) => this.#onHostExit(host, exit),
      onStuck: (silentMs, ready) => {
        if (host === this.#host) this.#up = false;
        this.#logger.error({ silentMs, ready }, 'plugin host stopped answering; killing it');
      },
    }).then((spawned) => (host = spawned));
  }

  #markUp(): void {
    this.#up = true;
    for (const w of this.#upWaiters.splice(0)) w(true);
  }

  #whenUp(): Promise<void> {
    if (this.#up) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#upWaiters.push((ok) => (ok ? resolve() : reject(new Error('the supervisor stopped'))));
    });
  }

  #onHostExit(host: HostProcess | undefined, exit: HostExit): void {
    if (host !== this.#host) return;
    this.#up = false;
    if (this.#stopping) return;
    // Culprit: named by the host before it aborted, else the one instance that was executing —
    // only when the host aborted or hung: a kill from outside (operator, OOM killer) is nobody's fault.
    let culprit = exit.lastWords?.instanceId;
    if (!culprit && (exit.stuck || exit.signal === 'SIGABRT')) {
      const busy = new Set([...this.#inFlight.values()].map((f) => f.rec.spec.id));
      for (const id of this.#requests.tags()) if (id) busy.add(id);
      if (busy.size === 1) culprit = [...busy][0];
    }
    const reason = exit.lastWords
      ? `catastrophic error: ${exit.lastWords.message}`
      : exit.stuck
        ? `plugin host stopped answering (no heartbeat for ${this.#heartbeatTimeoutMs} ms)`
        : `plugin host exited (${exit.signal ?? `code ${exit.code}`})`;
    const kind = exit.lastWords ? 'catastrophic' : exit.stuck ? 'stuck' : 'exited';
    this.#lastCrash = reason;
    this.#logger.error({ reason, culprit }, 'plugin host crashed');
    this.emit('host-crashed', culprit ? { reason, kind, culprit } : { reason, kind });
    this.#requests.failAll(new Error(reason));

    // Deliveries that had no side effect go back to their backlogs, ahead of what waits there;
    // the others are lost with the host, and counted.
    for (const [rid, f] of [...this.#inFlight].sort((a, b) => a[0] - b[0])) {
      this.#inFlight.delete(rid);
      const rec = f.rec;
      rec.inHost = 0;
      if (rec.spec.id === culprit || this.#instances.get(rec.spec.id) !== rec) {
        f.item.resolve(this.#count(rec, this.#outcome(rec, 'memory', 'host_crashed', `E_HOST_CRASHED: ${reason}`)));
      } else if (f.madeCall) {
        f.item.resolve(this.#count(rec, this.#outcome(rec, 'dropped', 'host_crashed', `E_HOST_CRASHED: ${reason}`)));
      } else {
        rec.queue.requeue(f.item);
      }
    }
    if (culprit) {
      const rec = this.#instances.get(culprit);
      if (rec) this.#quarantineInstance(rec, `crashed the plugin host: ${reason}`);
    }
    this.#scheduleHostRestart();
  }

  /** The one place a host restart is scheduled: crashes and failed starts back off together. */
  #scheduleHostRestart(): void {
    if (this.#stopping) return;
    const decision = this.#hostPolicy.failed();
    // A host is never given up on: without it no plugin runs. Repeated crashes keep the longest wait.
    const wait = decision.action === 'restart' ? decision.delayMs : this.#policy.backoffMs.max;
    if (this.#hostRestart) clearTimeout(this.#hostRestart);
    this.#hostRestart = setTimeout(() => void this.#restartHost(), wait);
  }

  async #restartHost(): Promise<void> {
    this.#hostRestart = undefined;
    if (this.#stopping) return;
    let host: HostProcess;
    try {
      host = await this.#spawn();
    } catch (err) {
      this.#logger.error({ err: (err as Error).message }, 'plugin host failed to start');
      this.#scheduleHostRestart();
      return;
    }
    this.#host = host;
    const reloads = [...this.#instances.values()].filter((r) => r.status === 'running');
    await Promise.all(reloads.map(async (rec) => {
      const reply = await this.#request({ op: 'load', spec: rec.spec }, rec.spec.id).catch(() => undefined);
      // The host dying (or being killed as stuck) mid-reload is handled by #onHostExit, not the plugin's failure.
      if (host !== this.#host || !host.alive) return;
      if (!reply || reply.op !== 'loaded' || !reply.ok) {
        const detail = reply?.op === 'loaded' && !reply.ok ? `: ${reply.message}` : '';
        this.#onFailed(rec.spec.id, rec.spec.version, `reload after host restart failed${detail}`);
        return;
      }
      // every plugin of a crashed host was restarted, whoever caused it
      rec.restarts++;
      this.emit('restarted', { instanceId: rec.spec.id, reason: `the plugin host restarted (${this.#lastCrash ?? 'crash'})` });
    }));
    if (this.#stopping || host !== this.#host || !host.alive) return;
    // Up only now: an event must not reach the new host before its plugin is back.
    this.#markUp();
    const waiting = [...this.#instances.values()].reduce((sum, r) => sum + r.queue.length, 0);
    this.#logger.info({ instances: reloads.length, waiting }, 'plugin host restarted');
    this.emit('host-restarted');
    for (const rec of this.#instances.values()) this.#pump(rec);
  }

  // ---- messages ------------------------------------------------------------------------------

  /** Sends what the instance's window allows from its backlog. */
  #pump(rec: InstanceRecord): void {
    const host = this.#host;
    if (!this.#up || !host || rec.status !== 'running' || this.#instances.get(rec.spec.id) !== rec) return;
    const window = windowOf(rec.spec);
    const channel = host.channel;
    while (rec.inHost < window) {
      const item = rec.queue.shift();
      if (!item) return;
      const rid = this.#nextRid++;
      this.#inFlight.set(rid, { rec, item, madeCall: false });
      rec.inHost++;
      const event = item.event;
      if (event.sentIn !== channel.batch) {
        channel.send({ op: 'event', eid: event.eid, type: event.type, json: event.json });
        event.sentIn = channel.batch;
      }
      channel.send({ op: 'deliver', rid, id: rec.spec.id, eid: event.eid });
    }
  }

  #request(message: DistributiveOmit<Extract<ToHost, { rid: number }>, 'rid'>, tag?: string): Promise<Answer> {
    const { id, answer } = this.#requests.open(tag);
    if (!this.#host?.channel.send({ ...message, rid: id } as ToHost)) this.#requests.fail(id, new Error('plugin host is not running'));
    return answer;
  }

  #onMessage(host: HostProcess | undefined, m: FromHost): void {
    // host is undefined only while its spawn is completing: it is the current one then
    if (host !== undefined && host !== this.#host) return;
    switch (m.op) {
      case 'outcome': {
        const f = this.#inFlight.get(m.rid);
        if (!f) return;
        this.#inFlight.delete(m.rid);
        const rec = f.rec;
        rec.inHost = Math.max(0, rec.inHost - 1);
        const current = this.#instances.get(rec.spec.id) === rec;
        if (!m.outcome.requeue || !current || rec.status === 'stopped') f.item.resolve(this.#count(rec, m.outcome));
        else if (rec.status === 'quarantined') f.item.resolve(this.#count(rec, this.#outcome(rec, 'quarantined', 'quarantined', rec.lastError ?? 'E_QUARANTINED')));
        else rec.queue.requeue(f.item);
        this.#pump(rec);
        return;
      }
      case 'call':
        if (m.eventRid !== undefined) {
          const f = this.#inFlight.get(m.eventRid);
          if (f) f.madeCall = true;
        }
        void this.#call(this.#host, m.cid, m.id, m.capability, m.json);
        return;
      case 'heap': {
        const rec = this.#instances.get(m.id);
        if (rec) rec.heapUsedBytes = m.usedBytes;
        return;
      }
      case 'log':
        this.emit('log', { instanceId: m.id, level: m.level, args: m.args });
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
      case 'loaded':
      case 'unloaded':
      case 'stopped':
        this.#requests.settle(m.rid, m);
        return;
    }
  }

  async #call(host: HostProcess | undefined, cid: number, id: string, capability: string, json: string): Promise<void> {
    let result: CallResult;
    try {
      const payload = JSON.parse(json) as unknown;
      result = await this.#onCall(id, capability, payload);
    } catch (err) {
      const bad = err instanceof SyntaxError;
      if (!bad) this.#logger.error({ plugin: id, capability, err: (err as Error)?.message }, 'capability handler threw');
      result = { ok: false, error: bad ? { code: 'E_INVALID_ARGUMENT', message: `${capability}: payload is not JSON` } : { code: 'E_INTERNAL', message: `${capability} failed` } };
    }
    // Answers for a host that has since died would land on the wrong call ids.
    if (host === this.#host) host?.channel.send({ op: 'result', cid, ...encode(result) });
  }

  // ---- policies ------------------------------------------------------------------------------

  #onFailed(id: string, version: number, reason: string): void {
    const rec = this.#instances.get(id);
    if (!rec || rec.spec.version !== version || rec.status === 'quarantined' || rec.status === 'stopped') return;
    rec.lastError = reason;
    const decision = rec.policy.failed();
    if (decision.action === 'quarantine') {
      this.#quarantineInstance(rec, `${decision.failures} failures within ${this.#policy.quarantine.windowMs} ms; last: ${reason}`);
      if (this.#up) void this.#request({ op: 'unload', id }).catch(() => undefined);
      return;
    }
    rec.status = 'restarting';
    this.#logger.warn({ plugin: id, reason, restartInMs: decision.delayMs, waiting: rec.queue.length }, 'plugin stopped; restarting');
    rec.backoff = setTimeout(() => void this.#restart(rec, reason), decision.delayMs);
  }

  async #restart(rec: InstanceRecord, reason: string): Promise<void> {
    rec.backoff = undefined;
    if (this.#stopping || rec.status !== 'restarting' || this.#instances.get(rec.spec.id) !== rec) return;
    try {
      await this.#whenUp();
    } catch {
      return;
    }
    const reply = await this.#request({ op: 'load', spec: rec.spec }, rec.spec.id).catch(() => undefined);
    if (rec.status !== 'restarting') return;
    if (reply && reply.op === 'loaded' && reply.ok) {
      rec.status = 'running';
      rec.restarts++;
      this.emit('restarted', { instanceId: rec.spec.id, reason });
      this.#pump(rec);
      return;
    }
    this.#onFailed(rec.spec.id, rec.spec.version, reply && reply.op === 'loaded' && !reply.ok ? `restart failed: ${reply.message}` : 'restart failed');
  }

  #quarantineInstance(rec: InstanceRecord, reason: string): void {
    if (rec.backoff) clearTimeout(rec.backoff);
    rec.backoff = undefined;
    rec.status = 'quarantined';
    rec.lastError = reason;
    rec.queue.drain(() => this.#count(rec, this.#outcome(rec, 'quarantined', 'quarantined', reason)));
    this.#logger.error({ plugin: rec.spec.id, reason }, 'plugin quarantined');
    this.emit('quarantined', { instanceId: rec.spec.id, reason });
  }

  #outcome(rec: InstanceRecord, status: DispatchOutcome['status'], reason: DropReason, error: string): DispatchOutcome {
    return { instanceId: rec.spec.id, version: rec.spec.version, status, reason, error };
  }

  #count(rec: InstanceRecord, o: DispatchOutcome): DispatchOutcome {
    rec.events++;
    rec.cpuMs += o.cpuMs ?? 0;
    if (o.status !== 'ok') {
      rec.errors++;
      if (o.error) rec.lastError = firstLine(o.error);
    }
    if (o.reason) rec.dropped[o.reason] = (rec.dropped[o.reason] ?? 0) + 1;
    return o;
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Only JSON goes back into a sandbox, and of an error only its documented fields: never a host Error. */
function encode(result: CallResult): { ok: boolean; json: string } {
  if (result && result.ok === true) {
    try {
      return { ok: true, json: JSON.stringify(result.value ?? null) ?? 'null' };
    } catch {
      return { ok: false, json: JSON.stringify({ code: 'E_INTERNAL', message: 'capability result is not JSON' }) };
    }
  }
  const e = (result && result.ok === false && result.error) || { code: 'E_INTERNAL', message: 'capability failed' };
  const error: Record<string, unknown> = { code: String(e.code), message: String(e.message) };
  if (typeof e.platformCode === 'number') error.platformCode = e.platformCode;
  if (typeof e.status === 'number') error.status = e.status;
  if (typeof e.traceId === 'string') error.traceId = e.traceId;
  return { ok: false, json: JSON.stringify(error) };
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}
