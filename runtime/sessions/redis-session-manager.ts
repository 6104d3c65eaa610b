/**
 * Shares one bot's shards among its processes through Redis (see README, "Sessions across processes").
 *
 * - **Leases.** A process runs a shard only while it holds the shard's lease: a RedisLock key with a TTL,
 *   renewed every TTL/3, with a fencing token taken at each acquisition. The renewal also writes the
 *   shard's session record (session id and the seq a successor may resume from), but only while the lease
 *   is still this process's, so a process that lost it can never overwrite the new owner's record.
 * - **Fencing on the dispatch path without a round trip.** A renewal sent at t proves the lease until
 *   t + TTL − margin on this host's monotonic clock. Events pass while that deadline holds. Past it (the
 *   process was paused, or renewals failed), the next event waits for a renewal: if the lease moved on,
 *   that event and every later one are refused (counted) and the shard is dropped without a close frame,
 *   leaving its session to the process that resumed it.
 * - **Redis unreachable.** Nobody can take a lease while Redis is away, so the shards held here keep
 *   dispatching on their open connections. No connection is (re)opened without a lease known to be valid,
 *   though, and no identify is granted: a connection lost during the outage waits for Redis (the platform
 *   keeps its events for the resume). When Redis is back — even restarted empty — each process renews or
 *   re-takes the leases of the shards it runs before anyone may acquire free ones (a hold-off after every
 *   (re)connect), so a shard never gets a second session.
 * - **Spread.** Processes heartbeat into a membership set; each tick every process compares its share to
 *   an even split (spread.ts), acquires free shards up to it and releases its surplus when someone is
 *   below theirs. A release closes the shard resumably, waits for its events' handlers, saves the resume
 *   point and frees the lease; the next owner resumes the session, so the platform replays what it holds.
 * - **Takeover.** A dead process's leases expire after the TTL; its shards are then free and taken like
 *   any other, resuming from the last record it wrote.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../logging/logger.ts';
import { silentLogger } from '../logging/logger.ts';
import type { GatewayBotInfo, GatewayDispatch } from '../gateway/dispatch-event.ts';
import { GatewayFatalError, SessionsStoppedError } from '../gateway/errors.ts';
import { EventEmitter } from 'node:events';
import { describeIntents } from '../gateway/intents.ts';
import { Shard, type ShardInfo } from '../gateway/shard.ts';
import { CommittedSeq } from './committed-seq.ts';
import { IdentifyThrottle } from './identify-throttle.ts';
import type { RedisConnection } from './redis-connection.ts';
import { RedisIdentifyThrottle } from './redis-identify-throttle.ts';
import { NEXT_FENCE, parseLockValue, RedisLock, type LockLease } from './redis-lock.ts';
import { shardTuning, type ClusterView, type SessionManager, type SessionManagerEvents, type SessionManagerOptions, type StopOptions } from './session-manager.ts';
import { planSpread } from './spread.ts';
import { sleep } from '../time/sleep.ts';
import { reportError } from '../errors/report-error.ts';

export interface RedisSessionManagerOptions extends SessionManagerOptions {
  redis: RedisConnection;
  appId: string;
  /** lease TTL; renewals every TTL/3. Default 10 000 ms */
  leaseTtlMs?: number;
  /** this process's name in Redis; default `{host}:{pid}:{random}` */
  processId?: string;
  /** how long a shard being released or stopped waits for its events' handlers; default 10 000 ms */
  drainMs?: number;
}

/** A session record kept for a shard (never the token). */
interface SessionRecord {
  sessionId: string;
  seq: number;
  owner: string;
  fence: number;
  released: boolean;
}

type How = 'fresh' | 'moved' | 'takeover' | 'own';
type Renewal = 'renewed' | 'reclaimed' | 'lost';

interface Held {
  id: number;
  lease: LockLease;
  shard: Shard;
  seq: CommittedSeq;
  state: 'running' | 'releasing' | 'lost';
  /** events waiting for a lease confirmation, in arrival order */
  pending: GatewayDispatch[];
  /** fencing tokens of this tenure: the first, and any taken when re-taking a lease Redis lost */
  fences: Set<number>;
  /** set once the lease is being handed back (a release and a stop may both ask) */
  givingUp: Promise<void> | undefined;
  /** the renewal in flight, and when it was sent */
  renewing: { sentAt: number; result: Promise<Renewal> } | undefined;
  up: boolean;
}

const RECORD_TTL_MS = 60 * 60_000;

// KEYS: lock, fence counter, session record · ARGV: owner, ttl, fresh ('1': may start a new session)
// A shard without a record would be identified: a new session. Unless it has been free for a while, its
// holder may just not have re-taken it yet (Redis flushed, evicted or restarted), so leave it alone.
const ACQUIRE = `${NEXT_FENCE}
local held = redis.call('GET', KEYS[1])
if held then return {0, held, {}} end
local record = redis.call('HGETALL', KEYS[3])
if #record == 0 and ARGV[3] ~= '1' then return {0, '', {}} end
local f = nextFence(KEYS[2])
redis.call('SET', KEYS[1], f .. '@' .. ARGV[1], 'PX', ARGV[2])
if #record > 0 then redis.call('HSET', KEYS[3], 'owner', ARGV[1], 'fence', f, 'released', '0') end
return {1, f, record}
`;

// KEYS: lock, fence counter, session record · ARGV: value, ttl, owner, fence, sessionId, seq, recordTtl
const RENEW = `${NEXT_FENCE}
local function save(fence)
  if ARGV[5] ~= '' then
    redis.call('HSET', KEYS[3], 'sessionId', ARGV[5], 'seq', ARGV[6], 'owner', ARGV[3], 'fence', fence, 'released', '0')
    redis.call('PEXPIRE', KEYS[3], ARGV[7])
  end
end
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  save(ARGV[4])
  return {1, ARGV[4]}
end
if v then return {0, v} end
-- The lock is gone: it expired while nobody took it, or Redis restarted empty. Take it back only if no
-- one has run the shard since: the record still names our fence, or there is no record at all.
local recorded = redis.call('HGET', KEYS[3], 'fence')
if recorded and recorded ~= ARGV[4] then return {0, ''} end
local f = nextFence(KEYS[2])
redis.call('SET', KEYS[1], f .. '@' .. ARGV[3], 'PX', ARGV[2])
save(f)
return {2, f}
`;

// KEYS: lock, session record · ARGV: value, sessionId, seq, recordTtl, keep ('1': resumable)
const RELEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[5] == '1' then
  if ARGV[2] ~= '' then
    redis.call('HSET', KEYS[2], 'sessionId', ARGV[2], 'seq', ARGV[3], 'released', '1')
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
  elseif redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('HSET', KEYS[2], 'released', '1')
  end
else
  redis.call('DEL', KEYS[2])
end
redis.call('DEL', KEYS[1])
return 1
`;

// KEYS: member expiries (zset), member info (hash) · ARGV: id, ttl, info ('' = leave)
const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, id in ipairs(gone) do redis.call('HDEL', KEYS[2], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 10)
end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
return out
`;

export class RedisSessionManager extends EventEmitter<SessionManagerEvents> implements SessionManager {
  readonly processId: string;
  readonly #options: RedisSessionManagerOptions;
  readonly #log: Logger;
  readonly #redis: RedisConnection;
  readonly #locks: RedisLock;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #renewMs: number;
  readonly #holdoffMs: number;
  readonly #drainMs: number;
  readonly #scripts: {
    acquire: (keys: string[], args: Array<string | number>) => Promise<[number, string, string[]]>;
    renew: (keys: string[], args: Array<string | number>) => Promise<[number, string]>;
    release: (keys: string[], args: Array<string | number>) => Promise<number>;
    heartbeat: (keys: string[], args: Array<string | number>) => Promise<string[]>;
  };
  readonly #held = new Map<number, Held>();
  readonly #life = new AbortController();
  readonly #startedAt = Date.now();
  #intents: number;
  #count = 0;
  #url = '';
  #identify: RedisIdentifyThrottle | undefined;
  #resume: IdentifyThrottle | undefined;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #tickAgain = false;
  #holdUntil = 0;
  #freeSince = new Map<number, number>();
  #view: Omit<ClusterView, 'redis'> | undefined;
  #fatal: GatewayFatalError | undefined;
  #stopping = false;
  #degradedReported = false;
  #started: { resolve: () => void; reject: (error: Error) => void; done: boolean } | undefined;
  readonly #onUp = (): void => this.#redisUp();
  readonly #onDown = (): void => {
    this.#degradedReported = false;
    this.emit('redis', { up: false });
  };

  constructor(options: RedisSessionManagerOptions) {
    super();
    this.#options = options;
    this.#intents = options.intents;
    this.#redis = options.redis;
    this.processId = (options.processId ?? `${hostname()}:${process.pid}:${randomBytes(2).toString('hex')}`).replace(/@/g, '_');
    this.#log = (options.logger ?? silentLogger).child({ component: 'sessions', process: this.processId });
    this.#prefix = `qqbot:${options.appId}`;
    this.#locks = new RedisLock({ redis: options.redis, prefix: this.#prefix });
    this.#ttlMs = options.leaseTtlMs ?? 10_000;
    this.#renewMs = Math.max(50, Math.floor(this.#ttlMs / 3));
    // after every (re)connect to Redis, the processes that hold shards get this long to renew or re-take
    // their leases before anyone acquires a free shard (reconnect backoff is capped at 1 s)
    this.#holdoffMs = this.#renewMs + 1_500;
    this.#drainMs = options.drainMs ?? 10_000;
    this.#scripts = {
      acquire: this.#redis.script('shard_acquire', 3, ACQUIRE),
      renew: this.#redis.script('shard_renew', 3, RENEW),
      release: this.#redis.script('shard_release', 2, RELEASE),
      heartbeat: this.#redis.script('member_heartbeat', 2, HEARTBEAT),
    };
  }

  async start(): Promise<void> {
    if (this.#started) throw new Error('RedisSessionManager already started');
    if (this.#stopping) throw new SessionsStoppedError('E_SESSIONS_STOPPED', 'session manager was stopped before it started');
    if (this.#intents === 0) {
      throw new GatewayFatalError('E_EMPTY_INTENTS', 'refusing to identify with no intents: the bot would receive nothing', {});
    }
    const started = new Promise<void>((resolve, reject) => {
      this.#started = { resolve, reject, done: false };
    });
    started.catch(() => undefined);
    const info = await this.#options.gatewayInfo();
    if (this.#stopping) throw new SessionsStoppedError('E_SESSIONS_STOPPED', 'session manager was stopped while starting', {});
    this.#url = info.url;
    const maxConcurrency = Math.max(1, info.session_start_limit.max_concurrency);
    const windowMs = this.#options.identifyWindowMs ?? 5_000;
    this.#identify = new RedisIdentifyThrottle({ redis: this.#redis, key: `${this.#prefix}:identify`, maxConcurrency, windowMs, logger: this.#log });
    this.#resume = new IdentifyThrottle({ maxConcurrency, windowMs });
    if (!this.#redis.up) this.#log.warn('waiting for redis before taking any shard');
    await this.#redis.ready(this.#life.signal).catch(() => undefined);
    if (this.#stopping) throw new SessionsStoppedError('E_SESSIONS_STOPPED', 'session manager was stopped while starting', {});
    this.#count = await this.#agreeShardCount(info);
    this.#redis.on('up', this.#onUp);
    this.#redis.on('down', this.#onDown);
    this.#holdUntil = performance.now() + this.#holdoffMs;
    this.#log.info({ shards: this.#count, leaseTtlMs: this.#ttlMs, maxConcurrency, intents: describeIntents(this.#intents) }, 'joining the bot\'s processes: shards are shared through redis');
    this.#schedule(0);
    return started;
  }

  async stop(options: StopOptions = {}): Promise<void> {
    const resumable = options.resumable ?? true;
    this.#stopping = true;
    this.#finishStart(new SessionsStoppedError('E_SESSIONS_STOPPED', 'session manager was stopped before its shards were ready', {}));
    const held = [...this.#held.values()].filter((h) => h.state !== 'lost');
    for (const h of held) h.state = 'releasing';
    await Promise.all(held.map((h) => h.shard.stop({ resumable })));
    await options.settle?.();
    // leases stay renewed (the tick keeps running) until each one is released with its resume point
    await Promise.all(held.map((h) => this.#giveUp(h, resumable)));
    this.#life.abort(new SessionsStoppedError('E_SESSIONS_STOPPED', 'session manager stopped', {}));
    clearTimeout(this.#timer);
    await this.#ticking;
    if (this.#redis.up) await this.#scripts.heartbeat(this.#memberKeys(), [this.processId, this.#ttlMs, '']).catch(() => undefined);
    this.#redis.off('up', this.#onUp);
    this.#redis.off('down', this.#onDown);
    this.#log.info({ resumable, released: held.map((h) => h.id) }, 'shards released');
  }

  async setIntents(intents: number): Promise<void> {
    if (intents === this.#intents) return;
    this.#intents = intents;
    if (this.#stopping || this.#fatal) return;
    const running = [...this.#held.values()].filter((h) => h.state === 'running');
    this.#log.info({ to: describeIntents(intents), shards: running.map((h) => h.id) }, 'intents changed: re-identifying the shards held here');
    await Promise.all(running.map((h) => new Promise<void>((resolve, reject) => {
      const done = (error?: Error): void => {
        h.shard.off('ready', onReady);
        h.shard.off('fatal', onFatal);
        clearInterval(poll);
        if (error) reject(error);
        else resolve();
      };
      const onReady = (): void => done();
      const onFatal = (error: Error): void => done(error);
      // a shard that moves away meanwhile will never be READY here
      const poll = setInterval(() => {
        if (h.state !== 'running') done();
      }, 100);
      h.shard.on('ready', onReady);
      h.shard.on('fatal', onFatal);
      h.shard.reidentify(intents, 'intents changed');
    })));
  }

  shards(): ShardInfo[] {
    return [...this.#held.values()].filter((h) => h.state !== 'lost').map((h) => h.shard.info()).sort((a, b) => a.id - b.id);
  }

  settle(dispatch: GatewayDispatch): void {
    if (dispatch.shard === undefined) return;
    this.#held.get(dispatch.shard)?.seq.settled(dispatch);
  }

  /** The shards this process holds now. */
  held(): number[] {
    return [...this.#held.values()].filter((h) => h.state === 'running').map((h) => h.id).sort((a, b) => a - b);
  }

  /** The bot's processes and their shards, as of the last tick (read from Redis). */
  cluster(): ClusterView | undefined {
    if (!this.#view) return undefined;
    return { ...this.#view, redis: { up: this.#redis.up, url: this.#redis.shownUrl, outages: this.#redis.outages, ...(this.#redis.downSince !== undefined ? { downSince: this.#redis.downSince } : {}) } };
  }

  // ---- the tick: heartbeat, renewals, view, balance ---------------------------------------------------

  #schedule(delayMs = this.#renewMs): void {
    clearTimeout(this.#timer);
    if (this.#life.signal.aborted) return;
    this.#timer = setTimeout(() => void this.#runTick(), delayMs);
  }

  async #runTick(): Promise<void> {
    if (this.#ticking) {
      this.#tickAgain = true;
      return;
    }
    this.#ticking = this.#tick().catch((error: Error) => {
      if (this.#redis.up) this.#log.warn({ err: error.message }, 'session tick failed; retrying next tick');
    });
    await this.#ticking;
    this.#ticking = undefined;
    const again = this.#tickAgain;
    this.#tickAgain = false;
    this.#schedule(again ? 0 : this.#renewMs);
  }

  async #tick(): Promise<void> {
    if (!this.#redis.up || this.#fatal) return;
    const held = [...this.#held.values()].filter((h) => h.state !== 'lost');
    const renewals = held.map((h) => this.#renew(h).catch(() => undefined));
    const info = JSON.stringify({ host: hostname(), pid: process.pid, startedAt: this.#startedAt });
    const [members, owners] = await Promise.all([
      this.#scripts.heartbeat(this.#memberKeys(), [this.processId, this.#ttlMs, info]),
      this.#redis.client.mget(Array.from({ length: this.#count }, (_, id) => this.#locks.keys(this.#lockName(id)).lock)),
      Promise.all(renewals),
    ]);
    const live: Array<{ id: string; info: string }> = [];
    for (let i = 0; i < members.length; i += 2) live.push({ id: members[i]!, info: members[i + 1]! });
    const ownerOf = owners.map((value) => parseLockValue(value)?.owner);
    this.#updateView(live, ownerOf);
    const now = performance.now();
    for (let id = 0; id < this.#count; id++) {
      if (ownerOf[id] !== undefined) this.#freeSince.delete(id);
      else if (!this.#freeSince.has(id)) this.#freeSince.set(id, now);
    }
    if (this.#stopping || performance.now() < this.#holdUntil) return;
    await this.#balance(live.map((m) => m.id), ownerOf);
    this.#checkStarted();
  }

  async #balance(members: string[], ownerOf: Array<string | undefined>): Promise<void> {
    const now = performance.now();
    // shards being released are neither ours (to release again) nor free (to take back)
    const owners = ownerOf.map((owner, id) => (owner === this.processId && this.#held.get(id)?.state !== 'running' ? '(releasing)' : owner));
    const longFree = [...this.#freeSince].filter(([, since]) => now - since > 2 * this.#renewMs).map(([id]) => id);
    const plan = planSpread({ shardCount: this.#count, members, self: this.processId, owners, longFree });
    for (const id of plan.release) {
      const held = this.#held.get(id);
      if (held?.state === 'running') void this.#release(held, `rebalancing to ${plan.target} shard(s) per process`);
    }
    for (const id of plan.acquire) {
      if (this.#stopping) break;
      const freeFor = now - (this.#freeSince.get(id) ?? now);
      // longer than a holder takes to re-take a lease Redis lost (one renewal interval)
      await this.#acquire(id, freeFor >= this.#renewMs + 1_000).catch((error: Error) => this.#log.warn({ shard: id, err: error.message }, 'could not acquire shard'));
    }
  }

  #updateView(members: Array<{ id: string; info: string }>, ownerOf: Array<string | undefined>): void {
    const processes = members.map((m) => {
      let info: { host?: string; pid?: number; startedAt?: number } = {};
      try {
        info = JSON.parse(m.info) as typeof info;
      } catch {
        // a member written by another version: show what we can
      }
      const shards = ownerOf.flatMap((owner, id) => (owner === m.id ? [id] : []));
      return { id: m.id, host: info.host ?? '?', pid: info.pid ?? 0, startedAt: info.startedAt ?? 0, shards, self: m.id === this.processId, stale: false };
    });
    // a holder whose heartbeat expired (dead, or paused) still blocks its shards until its leases do
    for (const owner of new Set(ownerOf)) {
      if (owner !== undefined && !processes.some((p) => p.id === owner)) {
        processes.push({ id: owner, host: '?', pid: 0, startedAt: 0, shards: ownerOf.flatMap((o, id) => (o === owner ? [id] : [])), self: false, stale: true });
      }
    }
    this.#view = {
      processId: this.processId,
      shardCount: this.#count,
      processes,
      unowned: ownerOf.flatMap((owner, id) => (owner === undefined ? [id] : [])),
      updatedAt: Date.now(),
    };
  }

  // ---- one shard's lease -----------------------------------------------------------------------------

  /** `fresh`: the shard has been free long enough that, without a session record, it may be identified anew. */
  async #acquire(id: number, fresh: boolean): Promise<void> {
    const keys = this.#shardKeys(id);
    const sentAt = performance.now();
    const [ok, fence, raw] = await this.#scripts.acquire([keys.lock, keys.fence, keys.record], [this.processId, this.#ttlMs, fresh ? '1' : '0']);
    if (ok !== 1) return;
    const lease = this.#locks.lease(this.#lockName(id), this.processId, Number(fence), { ttlMs: this.#ttlMs }, sentAt);
    const record = parseRecord(raw);
    const how: How = !record ? 'fresh' : record.owner === this.processId ? 'own' : record.released ? 'moved' : 'takeover';
    const seq = new CommittedSeq();
    seq.reset(record?.seq ?? 0);
    // the shard's listeners need `held` and `held` needs the shard: it is filled in on the next line
    const held: Held = { id, lease, fences: new Set([lease.fence]), shard: undefined as unknown as Shard, seq, state: 'running', pending: [], givingUp: undefined, renewing: undefined, up: false };
    held.shard = this.#newShard(held, record);
    this.#held.set(id, held);
    const from = record && record.owner !== this.processId ? record.owner : undefined;
    this.#log.info({ shard: `${id}/${this.#count}`, fence: lease.fence, how, ...(from ? { from } : {}), resume: Boolean(record?.sessionId) }, `acquired shard ${id}${how === 'takeover' ? ' (taking over from a process that stopped renewing)' : how === 'moved' ? ' (moved here)' : ''}`);
    this.emit('lease', { shard: id, change: 'acquired', how, fence: lease.fence, held: this.held() });
    held.shard.start();
  }

  #newShard(held: Held, record: SessionRecord | undefined): Shard {
    const options = this.#options;
    const shard = new Shard({
      id: held.id,
      count: this.#count,
      gatewayUrl: async () => this.#url,
      tokenSource: options.tokenSource,
      intents: this.#intents,
      identifyThrottle: this.#identify!,
      resumeThrottle: this.#resume!,
      beforeConnect: (signal) => this.#leaseForConnect(held, signal),
      ...shardTuning(options),
      ...(record?.sessionId ? { session: { sessionId: record.sessionId, seq: record.seq } } : {}),
      logger: this.#log,
    });
    shard.on('dispatch', (d) => this.#gate(held, d));
    shard.on('state', (s) => this.emit('state', s));
    shard.on('error', (e) => reportError(this, e));
    shard.on('ready', (r) => {
      held.seq.reset(shard.session()?.seq ?? 0);
      held.up = true;
      // a new session: record it now rather than at the next renewal, a successor must not try the old one
      this.#renew(held).catch(() => undefined);
      this.emit('ready', r);
      this.#checkStarted();
    });
    shard.on('resumed', (r) => {
      held.up = true;
      this.emit('resumed', r);
      this.#checkStarted();
    });
    shard.on('fatal', (error) => void this.#onFatal(error));
    return shard;
  }

  /** Every event passes here: the fencing check (in arrival order: later events wait behind a pending one). */
  #gate(held: Held, dispatch: GatewayDispatch): void {
    if (held.state === 'lost') return this.#refuse(held, dispatch);
    if (held.pending.length > 0) {
      held.pending.push(dispatch);
      return;
    }
    if (held.lease.valid) return this.#deliver(held, dispatch);
    if (!this.#redis.up) {
      this.#reportDegraded();
      return this.#deliver(held, dispatch);
    }
    held.pending.push(dispatch);
    void this.#confirm(held).then((lease) => {
      if (lease === 'lost') return; // #lose refused what was pending
      if (lease === 'unknown') this.#reportDegraded();
      for (const pending of held.pending.splice(0)) this.#deliver(held, pending);
    });
  }

  /**
   * An event the bot is about to hand to its plugins (after its dedupe claim, which takes a round trip):
   * is the lease it came under still this process's? Synchronous while the lease deadline holds.
   */
  admit(dispatch: GatewayDispatch): boolean | Promise<boolean> {
    if (dispatch.shard === undefined || dispatch.fence === undefined) return true;
    const held = this.#held.get(dispatch.shard);
    if (!held || held.state === 'lost' || !held.fences.has(dispatch.fence)) {
      this.emit('fenced', { shard: dispatch.shard, dispatch });
      return false;
    }
    if (held.lease.valid || !this.#redis.up) return true;
    return this.#confirm(held).then((lease) => {
      if (lease !== 'lost') return true;
      this.#refuse(held, dispatch);
      return false;
    });
  }

  /**
   * Past the lease deadline: does Redis still say the lease is ours? Only a renewal sent now counts (one
   * sent before a pause proves nothing about after it). A timeout while Redis is connected is asked again;
   * `unknown` only when Redis is away, or silent for a whole TTL.
   */
  async #confirm(held: Held): Promise<'valid' | 'lost' | 'unknown'> {
    const since = performance.now();
    for (;;) {
      if (isLost(held)) return 'lost';
      if (!this.#redis.up) return 'unknown';
      try {
        return (await this.#renewSentAfter(held, since)) === 'lost' ? 'lost' : 'valid';
      } catch {
        if (performance.now() - since > this.#ttlMs) return 'unknown';
        await sleep(100);
      }
    }
  }

  #deliver(held: Held, dispatch: GatewayDispatch): void {
    dispatch.fence = held.lease.fence;
    if (this.#options.settleEvents) held.seq.dispatched(dispatch);
    this.emit('dispatch', dispatch);
  }

  #refuse(held: Held, dispatch: GatewayDispatch): void {
    this.emit('fenced', { shard: held.id, dispatch });
  }

  #reportDegraded(): void {
    if (this.#degradedReported) return;
    this.#degradedReported = true;
    this.#log.warn({ shards: this.held() }, 'redis unreachable past the lease deadline: still dispatching on the open connections held here (no process can take a lease while redis is away)');
  }

  /** Before any connection: the lease must be known valid; while Redis cannot tell, wait for it. */
  async #leaseForConnect(held: Held, signal: AbortSignal): Promise<void> {
    for (;;) {
      if (isLost(held)) throw new Error('the shard lease was lost');
      if (held.lease.valid) return;
      if (!this.#redis.up) {
        this.#log.warn({ shard: held.id }, 'not reconnecting until redis confirms the lease');
        await this.#redis.ready(signal);
        continue;
      }
      const lease = await this.#confirm(held);
      if (lease === 'lost') throw new Error('the shard lease was lost');
      if (lease === 'valid') return;
      signal.throwIfAborted();
    }
  }

  /** One renewal at a time per shard (a second one would see the value the first set). Throws when Redis cannot say. */
  #renew(held: Held): Promise<Renewal> {
    if (!held.renewing) {
      const sentAt = performance.now();
      const result = this.#renewOnce(held, sentAt).finally(() => {
        held.renewing = undefined;
      });
      held.renewing = { sentAt, result };
    }
    return held.renewing.result;
  }

  /** A renewal sent at or after `since`: waits out an older one still in flight. */
  async #renewSentAfter(held: Held, since: number): Promise<Renewal> {
    for (;;) {
      const current = held.renewing;
      if (!current) return this.#renew(held);
      if (current.sentAt >= since) return current.result;
      await current.result.catch(() => undefined);
    }
  }

  async #renewOnce(held: Held, sentAt: number): Promise<Renewal> {
    if (held.state === 'lost') return 'lost';
    const keys = this.#shardKeys(held.id);
    const session = held.shard.session();
    const seq = this.#resumePoint(held);
    const [code, value] = await this.#scripts.renew([keys.lock, keys.fence, keys.record], [
      held.lease.value, this.#ttlMs, this.processId, held.lease.fence, session?.sessionId ?? '', seq, RECORD_TTL_MS,
    ]);
    if (isLost(held)) return 'lost';
    if (code === 1) {
      held.lease.extendFrom(sentAt);
      return 'renewed';
    }
    if (code === 2) {
      const previous = held.lease.fence;
      held.lease = this.#locks.lease(this.#lockName(held.id), this.processId, Number(value), { ttlMs: this.#ttlMs }, sentAt);
      held.fences.add(held.lease.fence);
      this.#log.warn({ shard: held.id, fence: held.lease.fence, previous }, 'shard lease had lapsed (redis restarted or unreachable); nobody took the shard, re-taken with a new fence');
      this.emit('lease', { shard: held.id, change: 'reclaimed', fence: held.lease.fence, held: this.held() });
      return 'reclaimed';
    }
    const holder = parseLockValue(value)?.owner;
    this.#lose(held, holder ? `now held by ${holder}` : 'another process ran it while this one could not renew');
    return 'lost';
  }

  /** Where a successor resumes this shard's session (see settleEvents). */
  #resumePoint(held: Held): number {
    const seq = held.shard.session()?.seq ?? 0;
    return this.#options.settleEvents ? Math.min(seq, held.seq.point().seq) : seq;
  }

  /** The lease moved on: refuse what waits, drop the connection without touching the session. */
  #lose(held: Held, reason: string): void {
    if (held.state === 'lost') return;
    held.state = 'lost';
    held.lease.markLost(reason);
    const refused = held.pending.splice(0);
    for (const dispatch of refused) this.#refuse(held, dispatch);
    if (this.#held.get(held.id) === held) this.#held.delete(held.id);
    this.#log.warn({ shard: `${held.id}/${this.#count}`, fence: held.lease.fence, refused: refused.length }, `lost the lease of shard ${held.id} (${reason}): dropping its connection, leaving its session to the new owner`);
    this.emit('lease', { shard: held.id, change: 'lost', fence: held.lease.fence, held: this.held() });
    void held.shard.stop({ resumable: true, abandon: true });
  }

  /** Hands a shard to whoever takes it next: close resumably, finish its events, save the point, free the lease. */
  async #release(held: Held, why: string): Promise<void> {
    held.state = 'releasing';
    this.#log.info({ shard: `${held.id}/${this.#count}`, why }, `releasing shard ${held.id}`);
    await held.shard.stop({ resumable: true });
    await held.seq.idle(this.#drainMs);
    await this.#giveUp(held, true);
  }

  #giveUp(held: Held, resumable: boolean): Promise<void> {
    held.givingUp ??= this.#releaseLease(held, resumable);
    return held.givingUp;
  }

  async #releaseLease(held: Held, resumable: boolean): Promise<void> {
    if (held.state === 'lost') return;
    const keys = this.#shardKeys(held.id);
    const session = held.shard.session();
    const seq = this.#resumePoint(held);
    const deadline = performance.now() + this.#drainMs;
    for (;;) {
      try {
        await held.renewing?.result.catch(() => undefined);
        if (isLost(held)) return;
        const released = await this.#scripts.release([keys.lock, keys.record], [held.lease.value, resumable ? session?.sessionId ?? '' : '', seq, RECORD_TTL_MS, resumable ? '1' : '0']);
        if (released === 0) return this.#lose(held, 'it was no longer ours when released');
        break;
      } catch (error) {
        // Redis away: the lease will expire and the last record written stands (its replay is deduplicated)
        if (performance.now() > deadline || this.#life.signal.aborted) {
          this.#log.warn({ shard: held.id, err: (error as Error).message }, 'could not release the shard lease; it will expire');
          break;
        }
        await sleep(200);
      }
    }
    held.lease.markLost('released');
    held.state = 'lost';
    if (this.#held.get(held.id) === held) this.#held.delete(held.id);
    this.emit('lease', { shard: held.id, change: 'released', fence: held.lease.fence, held: this.held() });
  }

  // ---- Redis coming and going ------------------------------------------------------------------------

  #redisUp(): void {
    this.#holdUntil = performance.now() + this.#holdoffMs;
    this.#freeSince.clear();
    this.emit('redis', { up: true });
    // an empty restarted Redis has lost the shard count too
    this.#redis.client.set(`${this.#prefix}:shards`, this.#count, 'NX').catch(() => undefined);
    void this.#runTick();
  }

  async #agreeShardCount(info: GatewayBotInfo): Promise<number> {
    const requested = this.#options.shards ?? 'auto';
    const mine = requested === 'auto' ? Math.max(1, Math.floor(info.shards)) : requested;
    if (!Number.isInteger(mine) || mine < 1) throw new GatewayFatalError('E_GATEWAY_SHARD', `invalid shard count ${String(requested)}`, { shards: requested });
    const key = `${this.#prefix}:shards`;
    const client = this.#redis.client;
    await client.set(key, mine, 'NX');
    const stored = Number(await client.get(key));
    if (stored === mine) return mine;
    // the live members (this process has not joined yet: the call only lists them)
    const members = await this.#scripts.heartbeat(this.#memberKeys(), [this.processId, this.#ttlMs, '']);
    if (members.length === 0) {
      // nobody runs the old count any more
      await client.set(key, mine);
      return mine;
    }
    if (requested === 'auto') {
      this.#log.warn({ recommended: mine, running: stored }, 'using the shard count the bot\'s other processes run');
      return stored;
    }
    throw new GatewayFatalError('E_SHARD_COUNT_MISMATCH', `bot.yaml says shards: ${mine}, but the bot's other processes run ${stored} shards; give every process the same count (or stop them all first)`, { shards: mine, running: stored });
  }

  // ---- start and failure ------------------------------------------------------------------------------

  #checkStarted(): void {
    const started = this.#started;
    if (!started || started.done || performance.now() < this.#holdUntil) return;
    if ([...this.#held.values()].every((h) => h.up || h.state !== 'running')) {
      started.done = true;
      this.#log.info({ shards: this.held(), of: this.#count }, this.held().length > 0 ? `holding shards ${this.held().join(', ')} of ${this.#count}` : `holding no shard yet (of ${this.#count}): waiting for the others to hand over a share`);
      started.resolve();
    }
  }

  #finishStart(error: Error): void {
    const started = this.#started;
    if (!started || started.done) return;
    started.done = true;
    started.reject(error);
  }

  async #onFatal(error: GatewayFatalError): Promise<void> {
    if (this.#fatal || this.#stopping) return;
    this.#fatal = error;
    this.#log.error({ code: error.code, context: error.context }, `bot stopped: ${error.message}`);
    this.#finishStart(error);
    const held = [...this.#held.values()].filter((h) => h.state !== 'lost');
    for (const h of held) h.state = 'releasing';
    await Promise.all(held.map((h) => h.shard.stop({ resumable: false })));
    await Promise.all(held.map((h) => this.#giveUp(h, false)));
    this.#life.abort(error);
    clearTimeout(this.#timer);
    if (this.#redis.up) await this.#scripts.heartbeat(this.#memberKeys(), [this.processId, this.#ttlMs, '']).catch(() => undefined);
    this.emit('fatal', error);
  }

  // ---- keys --------------------------------------------------------------------------------------------

  #lockName(id: number): string {
    return `shard:${id}`;
  }

  #shardKeys(id: number): { lock: string; fence: string; record: string } {
    const { lock, fence } = this.#locks.keys(this.#lockName(id));
    return { lock, fence, record: `${this.#prefix}:shard:${id}:session` };
  }

  #memberKeys(): string[] {
    return [`${this.#prefix}:members`, `${this.#prefix}:members:info`];
  }
}

// state changes while a renewal is awaited: read it through a call so TypeScript does not narrow it
function isLost(held: Held): boolean {
  return held.state === 'lost';
}

function parseRecord(raw: string[] | undefined): SessionRecord | undefined {
  if (!raw || raw.length === 0) return undefined;
  const fields = new Map<string, string>();
  for (let i = 0; i + 1 < raw.length; i += 2) fields.set(raw[i]!, raw[i + 1]!);
  const owner = fields.get('owner');
  if (!owner) return undefined;
  return {
    sessionId: fields.get('sessionId') ?? '',
    seq: Number(fields.get('seq') ?? 0) || 0,
    owner,
    fence: Number(fields.get('fence') ?? 0) || 0,
    released: fields.get('released') === '1',
  };
}
