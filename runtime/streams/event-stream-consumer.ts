/**
 * Worker side of the Stream. Entries are read in the bot's consumer group (`XREADGROUP`) and handed to
 * the plugins in Stream order; an entry is acknowledged (`XACK`) only once every plugin handler for its
 * event has finished, so a worker that dies leaves its unfinished entries pending.
 *
 * - Pending entries idle longer than `claimIdleMs` are taken over (`XAUTOCLAIM`); a live worker keeps its
 *   own in-flight entries from looking idle (`XCLAIM … JUSTID`, which does not count a delivery), so
 *   "idle" means "its consumer is gone" and a slow handler is not run twice. A Redis outage stops that
 *   refresh in every worker at once, so after one a worker refreshes its own entries first and takes
 *   over nobody's for `claimIdleMs` plus the reconnect backoff's spread: the live workers reconnect in
 *   that time and keep theirs.
 * - An event is claimed in the cross-process dedupe by its entry, with the delivery count as the fencing
 *   token: a redelivery of that entry takes over the claim of an attempt that never finished; a copy of
 *   the event in another entry (the gateway writes one when an XADD's answer is lost) is dropped, whether
 *   the event is done or still in flight, and so is an entry a worker finished but died before acking.
 *   An event whose claim Redis could not answer waits until it can: only the claim tells copies apart.
 * - A handler that threw leaves the entry pending, to be tried again after `claimIdleMs`; the
 *   `maxDeliveries`-th failure (or a claim past that count) moves it to the dead-letter stream with the
 *   failing plugin and its last error, and it is acknowledged.
 * - Before an entry is left pending, the plugins that did handle it are recorded in Redis (a hash per
 *   entry, with how far the event's replies got); a redelivery, here or in another worker, runs only the
 *   others, so a plugin that replied is not run (and does not reply) again because another plugin failed,
 *   and a reply on the redelivery takes the next msg_seq. A worker that dies mid-handler records nothing:
 *   its entry is run again by every plugin, and the reply ledger refuses the replies already sent.
 */
import { hostname } from 'node:os';
import type { GatewayDispatch } from '../gateway/dispatch-event.ts';
import type { Logger } from '../logging/logger.ts';
import { REDIS_MAX_BACKOFF_MS, type RedisConnection } from '../sessions/redis-connection.ts';
import type { ClaimResult, RedisEventDedupe } from '../sessions/redis-dedupe.ts';
import { decodeDispatch, EVENT_FIELD } from './stream-keys.ts';
import { sleep } from '../time/sleep.ts';

export interface EventStreamConsumerOptions {
  /** commands (acks, claims, dead letters) */
  redis: RedisConnection;
  /** blocking reads: a connection of its own, so a `BLOCK` never holds up an ack */
  reader: RedisConnection;
  key: string;
  deadKey: string;
  group: string;
  claimIdleMs: number;
  maxDeliveries: number;
  maxLen: number;
  dedupe: RedisEventDedupe;
  logger: Logger;
  /** runs the plugins of the event but those done with it on `earlier` deliveries */
  handle: (dispatch: GatewayDispatch, earlier: EarlierDeliveries) => Promise<HandleResult>;
  onAcked?: () => void;
  onClaimed?: (entries: number) => void;
  onDead?: () => void;
  onDuplicate?: () => void;
  /** entries trimmed from the Stream (MAXLEN) before any worker finished them */
  onTrimmed?: (entries: number) => void;
  /** entries read but not finished here at most (backpressure on a slow plugin) */
  maxInFlight?: number;
  /** this consumer's name in the group; default `<host>:<pid>` */
  name?: string;
}

/** How far an event's replies got: the last msg_seq taken, the replies sent, and (an interaction) whether it was acknowledged. */
export interface RepliesSoFar {
  seq: number;
  replies: number;
  acked?: boolean;
}

/** What became of an event's plugins on one delivery. */
export interface HandleResult {
  /** plugins done with the event (their handler returned, or its reply was settled by another delivery): not run again */
  completed: string[];
  /** handlers that threw: the entry is delivered again to these (and to plugins that never got it) */
  failures: HandlerFailure[];
  replied?: RepliesSoFar;
}

/** What earlier deliveries of an entry did: the plugins done with it, how far the event's replies got. */
export interface EarlierDeliveries {
  completed: ReadonlySet<string>;
  replied?: RepliesSoFar;
}

export interface HandlerFailure {
  /** undefined when no plugin ran (the worker was stopping) */
  plugin: string | undefined;
  error: string;
}

type Entry = [id: string, fields: string[]];

const READ_BLOCK_MS = 1_000;
/**
 * how much later than this worker another live one may reconnect after an outage (its reconnect backoff),
 * added to claimIdleMs before taking anyone's entries over
 */
const RECONNECT_SPREAD_MS = 2 * REDIS_MAX_BACKOFF_MS;
/** a dedupe claim Redis refused while connected is asked again after this long */
const UNKNOWN_CLAIM_RETRY_MS = 100;
/** consumers of the group that left (pending nothing) are removed after this long, so the console lists live ones */
const FORGET_CONSUMER_MS = 10 * 60_000;
const FORGET_EVERY_MS = 60_000;
/** the least an entry's record (last error, plugins done) is kept; longer when claimIdleMs × maxDeliveries is */
const RECORD_TTL_MS = 24 * 3_600_000;
/** fields of an entry's record naming a plugin done with it: `plugin:<name>` */
const PLUGIN_FIELD = 'plugin:';

export class EventStreamConsumer {
  readonly #o: EventStreamConsumerOptions;
  readonly #log: Logger;
  /** this consumer's name in the group */
  readonly name: string;
  readonly #inFlight = new Set<string>();
  readonly #maxInFlight: number;
  #stopped = false;
  #reading: Promise<void> | undefined;
  #claimTimer: NodeJS.Timeout | undefined;
  #claiming: Promise<void> | undefined;
  #slot: (() => void) | undefined;
  /** `settled` waiting for the entries in flight to be done */
  readonly #whenIdle: Array<() => void> = [];
  /**
   * Entries handled here whose ack Redis did not take (it was away): acked again when it is back, and
   * acked without running the plugins again if they come back here first (a second run in this process
   * would answer with the next msg_seq, which the platform takes as a new reply).
   */
  readonly #unacked = new Map<string, GatewayDispatch>();
  readonly #onUp = (): void => {
    this.#upAt = Date.now();
    void this.#keepInFlight().then(() => this.#ackLeftovers());
  };
  /** when Redis last came (back) up: nobody's entries are taken over for claimIdleMs (+ the reconnect spread) after it */
  #upAt = Date.now();
  #forgottenAt = 0;
  #acked = 0;
  #failed = 0;
  #dead = 0;

  constructor(options: EventStreamConsumerOptions) {
    this.#o = options;
    this.name = options.name ?? `${hostname()}:${process.pid}`;
    this.#log = options.logger.child({ part: 'stream-consumer', consumer: this.name });
    this.#maxInFlight = options.maxInFlight ?? 512;
  }

  get counts(): { acked: number; failed: number; dead: number; inFlight: number } {
    return { acked: this.#acked, failed: this.#failed, dead: this.#dead, inFlight: this.#inFlight.size };
  }

  start(): void {
    this.#o.redis.on('up', this.#onUp);
    this.#reading = this.#readLoop();
    const every = Math.max(50, Math.floor(this.#o.claimIdleMs / 3));
    this.#claimTimer = setInterval(() => {
      this.#claiming ??= this.#claimTick().finally(() => {
        this.#claiming = undefined;
      });
    }, every);
  }

  /** Stops reading and claiming; entries in flight finish (the caller drains the plugins) and are acked. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#o.redis.off('up', this.#onUp);
    clearInterval(this.#claimTimer);
    this.#slot?.();
    await this.#reading;
    await this.#claiming;
  }

  /** Waits (at most `timeoutMs`) for the entries in flight to be acked, failed or buried; returns how many were not. */
  async settled(timeoutMs: number): Promise<number> {
    if (this.#inFlight.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.#whenIdle.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.#inFlight.size;
  }

  async #ensureGroup(): Promise<void> {
    try {
      // from the start of the Stream: events published before any worker joined are handled too
      await this.#o.redis.client.xgroup('CREATE', this.#o.key, this.#o.group, '0', 'MKSTREAM');
    } catch (error) {
      if (!/BUSYGROUP/.test((error as Error).message)) throw error;
    }
  }

  async #readLoop(): Promise<void> {
    const { reader, redis, key, group } = this.#o;
    let grouped = false;
    while (!this.#stopped) {
      if (this.#inFlight.size >= this.#maxInFlight) {
        await new Promise<void>((resolve) => (this.#slot = resolve));
        this.#slot = undefined;
        continue;
      }
      if (!reader.up || !redis.up) {
        const wait = AbortSignal.timeout(READ_BLOCK_MS);
        await Promise.all([reader.ready(wait), redis.ready(wait)]).catch(() => undefined);
        continue;
      }
      let read: Array<[string, Entry[]]> | null;
      try {
        if (!grouped) await this.#ensureGroup();
        grouped = true;
        const count = Math.min(100, this.#maxInFlight - this.#inFlight.size);
        read = (await reader.client.xreadgroup('GROUP', group, this.name, 'COUNT', count, 'BLOCK', READ_BLOCK_MS, 'STREAMS', key, '>')) as Array<[string, Entry[]]> | null;
      } catch (error) {
        // a Redis restarted empty has lost the group
        if (/NOGROUP/.test((error as Error).message)) grouped = false;
        await sleep(200);
        continue;
      }
      const entries = read?.[0]?.[1] ?? [];
      if (entries.length > 0) this.#takeAll(entries.map(([id, fields]) => ({ id, fields, deliveries: 1 })));
    }
  }

  /**
   * Claims in the dedupe go out together (pipelined); the events reach the plugins in Stream order.
   * Returns once every event was handed on or dropped (its handling continues).
   */
  #takeAll(entries: Array<{ id: string; fields: string[]; deliveries: number }>): Promise<void> {
    const decoded = entries.map((entry) => {
      this.#inFlight.add(entry.id);
      const dispatch = decodeDispatch(entry.fields);
      return {
        ...entry,
        dispatch,
        claim: dispatch ? this.#o.dedupe.claim({ ...dispatch, fence: entry.deliveries }, entry.id) : undefined,
        // a first delivery has nothing recorded: no round trip for it
        earlier: dispatch && entry.deliveries > 1 ? this.#earlier(entry.id) : Promise.resolve<EarlierDeliveries>({ completed: new Set() }),
      };
    });
    return (async () => {
      for (const { id, fields, deliveries, dispatch, claim, earlier } of decoded) {
        if (this.#stopped) {
          // read as the worker stopped: left pending, another worker claims it
          this.#release(id);
          continue;
        }
        const handled = this.#unacked.get(id);
        if (handled) {
          void this.#o.dedupe.done(handled).then(() => this.#ack(id, deliveries > 1)).then((ok) => ok && this.#unacked.delete(id)).finally(() => this.#release(id));
          continue;
        }
        if (!dispatch) {
          void this.#bury(id, fields, { plugin: '', error: 'the entry carries no event' }, deliveries).finally(() => this.#release(id));
          continue;
        }
        const verdict = await this.#whenKnown(await claim!, dispatch, deliveries, id);
        if (verdict === 'unknown') {
          // the worker stopped while Redis could not say whether the event is a copy: left pending
          this.#release(id);
          continue;
        }
        if (verdict === 'duplicate') {
          this.#o.onDuplicate?.();
          void this.#ack(id, deliveries > 1).finally(() => this.#release(id));
          continue;
        }
        const before = await earlier;
        if (!before) {
          // which plugins are done is unknown: left pending rather than run them all again
          this.#release(id);
          continue;
        }
        if (before.completed.size > 0) this.#log.info({ entry: id, type: dispatch.t, deliveries, completed: [...before.completed] }, 'delivered again to the plugins that did not finish it');
        void this.#o.handle(dispatch, before).then((result) => this.#finished(id, fields, dispatch, deliveries, result)).finally(() => this.#release(id));
      }
    })();
  }

  /** A claim Redis could not answer, asked again until it can (or the worker stops: `unknown`). */
  async #whenKnown(verdict: ClaimResult, dispatch: GatewayDispatch, deliveries: number, id: string): Promise<ClaimResult> {
    while (verdict === 'unknown' && !this.#stopped) {
      if (this.#o.redis.up) await sleep(UNKNOWN_CLAIM_RETRY_MS);
      else await this.#o.redis.ready(AbortSignal.timeout(READ_BLOCK_MS)).catch(() => undefined);
      if (this.#o.redis.up) verdict = await this.#o.dedupe.claim({ ...dispatch, fence: deliveries }, id);
    }
    return verdict;
  }

  async #finished(id: string, fields: string[], dispatch: GatewayDispatch, deliveries: number, result: HandleResult): Promise<void> {
    const failure = describeFailures(result.failures);
    if (!failure) {
      await this.#o.dedupe.done(dispatch);
      if (!(await this.#ack(id, deliveries > 1))) this.#unacked.set(id, dispatch);
      return;
    }
    this.#failed++;
    if (deliveries >= this.#o.maxDeliveries) {
      await this.#bury(id, fields, failure, deliveries);
      return;
    }
    this.#log.warn({ entry: id, type: dispatch.t, deliveries, plugin: failure.plugin, completed: result.completed, err: failure.error.split('\n')[0] }, 'a plugin handler failed: the entry stays pending and is delivered again to the plugins that did not finish it');
    // the next worker to take it over may be another process: it finds here which plugins are done and the error
    const { redis, claimIdleMs, maxDeliveries } = this.#o;
    const ttl = Math.max(RECORD_TTL_MS, 10 * claimIdleMs * maxDeliveries);
    const done: Array<string | number> = result.completed.flatMap((plugin) => [`${PLUGIN_FIELD}${plugin}`, 1]);
    if (result.replied) done.push('seq', result.replied.seq, 'replies', result.replied.replies, ...(result.replied.acked ? ['acked', 1] : []));
    const record = redis.client.multi().hset(this.#errorKey(id), 'plugin', failure.plugin, 'error', failure.error.slice(0, 4000)).pexpire(this.#errorKey(id), ttl);
    if (done.length > 0) record.hset(this.#doneKey(id), ...done).pexpire(this.#doneKey(id), ttl);
    try {
      // a command refused inside the transaction is in its replies, not thrown
      const refused = (await record.exec())?.find(([e]) => e)?.[0];
      if (refused) throw refused;
    } catch (error) {
      this.#log.warn({ entry: id, completed: result.completed, err: (error as Error).message }, 'could not record which plugins finished an entry: its redelivery runs them again');
    }
  }

  /** What earlier deliveries of an entry recorded; undefined when Redis could not say. */
  async #earlier(id: string): Promise<EarlierDeliveries | undefined> {
    try {
      const record = await this.#o.redis.client.hgetall(this.#doneKey(id));
      const completed = new Set(Object.keys(record).filter((f) => f.startsWith(PLUGIN_FIELD)).map((f) => f.slice(PLUGIN_FIELD.length)));
      const seq = Number(record['seq'] ?? 0);
      const acked = record['acked'] === '1';
      return seq > 0 || acked ? { completed, replied: { seq, replies: Number(record['replies'] ?? 0), ...(acked ? { acked } : {}) } } : { completed };
    } catch (error) {
      this.#log.debug({ entry: id, err: (error as Error).message }, 'could not read which plugins finished an entry');
      return undefined;
    }
  }

  /** `tidy`: the entry was delivered before, so it may have a record to delete with it */
  async #ack(id: string, tidy = false): Promise<boolean> {
    try {
      if (tidy) await this.#o.redis.client.multi().xack(this.#o.key, this.#o.group, id).del(this.#doneKey(id), this.#errorKey(id)).exec();
      else await this.#o.redis.client.xack(this.#o.key, this.#o.group, id);
      this.#acked++;
      this.#o.onAcked?.();
      return true;
    } catch (error) {
      // still pending: acked again once Redis is back (#ackLeftovers), or claimed and found done
      this.#log.debug({ entry: id, err: (error as Error).message }, 'could not acknowledge an entry');
      return false;
    }
  }

  async #ackLeftovers(): Promise<void> {
    if (this.#unacked.size === 0) return;
    this.#log.warn({ entries: this.#unacked.size }, 'redis is back: acknowledging the entries handled while it was away');
    for (const [id, dispatch] of [...this.#unacked]) {
      if (this.#inFlight.has(id)) continue;
      await this.#o.dedupe.done(dispatch);
      if (await this.#ack(id)) this.#unacked.delete(id);
    }
  }

  /** To the dead-letter stream with its last error, then acknowledged: it is not tried again. */
  async #bury(id: string, fields: string[], failure: { plugin: string; error: string }, deliveries: number): Promise<void> {
    const { redis, key, deadKey, group, maxLen } = this.#o;
    const event = fields[fields.indexOf(EVENT_FIELD) + 1] ?? '';
    const { plugin, error } = failure;
    try {
      await redis.client.multi()
        .xadd(deadKey, 'MAXLEN', '~', maxLen, '*', 'entry', id, 'deliveries', deliveries, 'plugin', plugin, 'error', error.slice(0, 4000), 'consumer', this.name, EVENT_FIELD, event)
        .xack(key, group, id)
        .del(this.#errorKey(id), this.#doneKey(id))
        .exec();
    } catch (failure) {
      this.#log.warn({ entry: id, err: (failure as Error).message }, 'could not move an entry to the dead-letter stream: it stays pending');
      return;
    }
    const dispatch = decodeDispatch(fields);
    if (dispatch) await this.#o.dedupe.done(dispatch);
    this.#dead++;
    this.#o.onDead?.();
    this.#log.error({ entry: id, deliveries, deadLetter: deadKey, plugin, err: error.split('\n')[0] }, `an event failed ${deliveries} deliveries: moved to the dead-letter stream`);
  }

  async #claimTick(): Promise<void> {
    const { redis, key, group, claimIdleMs, maxDeliveries } = this.#o;
    if (!redis.up || this.#stopped) return;
    try {
      await this.#keepInFlight();
      if (Date.now() - this.#upAt < claimIdleMs + RECONNECT_SPREAD_MS) return;
      let cursor = '0-0';
      do {
        const [next, claimed, deleted] = (await redis.client.xautoclaim(key, group, this.name, claimIdleMs, cursor, 'COUNT', 100)) as [string, Entry[], string[]];
        cursor = next;
        if (deleted.length > 0) {
          this.#log.error({ entries: deleted.length }, 'pending entries were trimmed from the stream (MAXLEN) before a worker finished them: lost');
          this.#o.onTrimmed?.(deleted.length);
        }
        const fresh = claimed.filter(([id]) => !this.#inFlight.has(id));
        if (fresh.length === 0) continue;
        this.#o.onClaimed?.(fresh.length);
        const counts = await Promise.all(fresh.map(([id]) => redis.client.xpending(key, group, id, id, 1) as Promise<Array<[string, string, number, number]>>));
        const retry: Array<{ id: string; fields: string[]; deliveries: number }> = [];
        for (const [i, [id, fields]] of fresh.entries()) {
          const deliveries = counts[i]?.[0]?.[3] ?? 1;
          if (deliveries > maxDeliveries) {
            // its consumers died on it (or failed it) every time
            this.#inFlight.add(id);
            const recorded = (await redis.client.hgetall(this.#errorKey(id)).catch(() => ({}))) as Record<string, string>;
            const last = recorded['error'] !== undefined
              ? { plugin: recorded['plugin'] ?? '', error: recorded['error'] }
              : { plugin: '', error: `not acknowledged after ${deliveries - 1} deliveries (its consumers stopped before finishing it)` };
            void this.#bury(id, fields, last, deliveries - 1).finally(() => this.#release(id));
          } else retry.push({ id, fields, deliveries });
        }
        if (retry.length > 0) {
          this.#log.info({ entries: retry.length }, 'took over pending entries idle past claimIdleMs');
          await this.#takeAll(retry);
        }
      } while (cursor !== '0-0' && !this.#stopped && this.#inFlight.size < this.#maxInFlight);
      await this.#forgetLeftConsumers();
    } catch (error) {
      if (/NOGROUP/.test((error as Error).message)) return;
      this.#log.debug({ err: (error as Error).message }, 'claiming idle entries');
    }
  }

  /** Resets the idle time of the entries in flight here, so no other worker takes them over. */
  async #keepInFlight(): Promise<void> {
    const { redis, key, group } = this.#o;
    if (this.#inFlight.size === 0 || !redis.up) return;
    await redis.client.xclaim(key, group, this.name, 0, ...this.#inFlight, 'JUSTID').catch((error: Error) => {
      this.#log.debug({ err: error.message }, 'refreshing the entries in flight');
    });
  }

  /** Workers that stopped (their entries acked or claimed) stay in the group until removed here. */
  async #forgetLeftConsumers(): Promise<void> {
    if (Date.now() - this.#forgottenAt < FORGET_EVERY_MS) return;
    this.#forgottenAt = Date.now();
    const { redis, key, group } = this.#o;
    const list = (await redis.client.xinfo('CONSUMERS', key, group)) as unknown[][];
    for (const fields of list) {
      const c: Record<string, unknown> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) c[String(fields[i])] = fields[i + 1];
      const idle = Math.max(FORGET_CONSUMER_MS, 10 * this.#o.claimIdleMs);
      if (c['name'] !== this.name && Number(c['pending']) === 0 && Number(c['idle']) > idle) await redis.client.xgroup('DELCONSUMER', key, group, String(c['name']));
    }
  }

  #release(id: string): void {
    this.#inFlight.delete(id);
    this.#slot?.();
    if (this.#inFlight.size === 0) for (const idle of this.#whenIdle.splice(0)) idle();
  }

  #errorKey(id: string): string {
    return `${this.#o.key}:error:${id}`;
  }

  #doneKey(id: string): string {
    return `${this.#o.key}:done:${id}`;
  }
}

/** The failed plugins of a delivery as one record: their names, and each one's error under its name. */
function describeFailures(failures: HandlerFailure[]): { plugin: string; error: string } | undefined {
  if (failures.length === 0) return undefined;
  if (failures.length === 1) return { plugin: failures[0]!.plugin ?? '', error: failures[0]!.error };
  return {
    plugin: failures.map((f) => f.plugin ?? '').join(' '),
    error: failures.map((f) => `${f.plugin ?? '(no plugin)'}: ${f.error}`).join('\n'),
  };
}
