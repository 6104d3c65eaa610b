import type { Logger } from '../logging/logger.ts';
import { silentLogger } from '../logging/logger.ts';
import type { GatewayDispatch } from '../gateway/dispatch-event.ts';
import { GatewayFatalError, SessionsStoppedError } from '../gateway/errors.ts';
import { EventEmitter } from 'node:events';
import { describeIntents } from '../gateway/intents.ts';
import { Shard, type ShardInfo } from '../gateway/shard.ts';
import { CommittedSeq } from './committed-seq.ts';
import { IdentifyThrottle } from './identify-throttle.ts';
import { shardTuning, type SessionManager, type SessionManagerEvents, type SessionManagerOptions, type StopOptions } from './session-manager.ts';
import { reportError } from '../errors/report-error.ts';

/** What a successor needs to resume one shard: the session, the seq to resume from, what to drop when replayed. */
export interface SavedSession {
  shard: number;
  sessionId: string;
  seq: number;
  /** dedupe keys of events above `seq` that were already handled (see CommittedSeq) */
  settledAbove?: string[];
}

export interface LocalSessionManagerOptions extends SessionManagerOptions {
  /** sessions left by a predecessor (`sessions()`), resumed instead of identified */
  resumeFrom?: SavedSession[];
}

/**
 * Runs every shard of one bot in this process. Identifies go through one token bucket of
 * `max_concurrency` per window shared by the bot's shards; resumes through a second bucket of the
 * same shape, so a mass reconnect is paced without spending identify budget. A fatal close stops
 * this bot only: every shard is stopped and `fatal` is emitted once.
 */
export class LocalSessionManager extends EventEmitter<SessionManagerEvents> implements SessionManager {
  readonly #options: LocalSessionManagerOptions;
  readonly #log: Logger;
  #intents: number;
  #shards: Shard[] = [];
  readonly #points = new Map<number, CommittedSeq>();
  #fatal: GatewayFatalError | undefined;
  #stopping = false;
  // rejects a start() still waiting for its shards when stop() comes first
  #cancelStart: ((error: Error) => void) | undefined;

  constructor(options: LocalSessionManagerOptions) {
    super();
    this.#options = options;
    this.#intents = options.intents;
    this.#log = (options.logger ?? silentLogger).child({ component: 'sessions' });
  }

  async start(): Promise<void> {
    if (this.#shards.length > 0) throw new Error('LocalSessionManager already started');
    if (this.#stopping) throw new SessionsStoppedError('E_SESSIONS_STOPPED', 'session manager was stopped before it started');
    if (this.#intents === 0) {
      throw new GatewayFatalError('E_EMPTY_INTENTS', 'refusing to identify with no intents: the bot would receive nothing', {});
    }
    const info = await this.#options.gatewayInfo();
    // a shutdown that came while /gateway/bot was in flight: no shard may start after stop()
    if (this.#stopping) throw new SessionsStoppedError('E_SESSIONS_STOPPED', 'session manager was stopped while starting', {});
    const requested = this.#options.shards ?? 'auto';
    const count = requested === 'auto' ? Math.max(1, Math.floor(info.shards)) : requested;
    if (!Number.isInteger(count) || count < 1) {
      throw new GatewayFatalError('E_GATEWAY_SHARD', `invalid shard count ${String(requested)}`, { shards: requested });
    }
    const limit = info.session_start_limit;
    const resumable = new Map((this.#options.resumeFrom ?? []).map((s) => [s.shard, s]));
    const identifies = count - [...resumable.keys()].filter((id) => id < count).length;
    if (identifies > limit.remaining) {
      throw new GatewayFatalError(
        'E_SESSION_LIMIT',
        `cannot start ${count} shard(s): only ${limit.remaining} of ${limit.total} session starts remain today (resets in ${Math.ceil(limit.reset_after / 1000)} s)`,
        { shards: count, remaining: limit.remaining, total: limit.total, resetAfterMs: limit.reset_after },
      );
    }
    const windowMs = this.#options.identifyWindowMs ?? 5_000;
    const maxConcurrency = Math.max(1, limit.max_concurrency);
    const identifyThrottle = new IdentifyThrottle({ maxConcurrency, windowMs });
    const resumeThrottle = new IdentifyThrottle({ maxConcurrency, windowMs });
    // fetched once: reconnects must not hammer the rate-limited /gateway endpoint
    const url = info.url;
    const gatewayUrl = async (): Promise<string> => url;
    this.#log.info({ shards: count, maxConcurrency, remaining: limit.remaining, intents: describeIntents(this.#intents) }, 'starting shards');

    const readyOnce = new Set<number>();
    let settle: { resolve: () => void; reject: (e: Error) => void } | undefined;
    const started = new Promise<void>((resolve, reject) => {
      settle = { resolve, reject };
    });
    this.#cancelStart = (error) => settle?.reject(error);

    for (let id = 0; id < count; id++) {
      const previous = resumable.get(id);
      const point = new CommittedSeq();
      point.reset(previous?.seq ?? 0);
      this.#points.set(id, point);
      const shard = new Shard({
        id,
        count,
        gatewayUrl,
        tokenSource: this.#options.tokenSource,
        intents: this.#intents,
        identifyThrottle,
        resumeThrottle,
        ...shardTuning(this.#options),
        ...(previous ? { session: { sessionId: previous.sessionId, seq: previous.seq } } : {}),
        logger: this.#log,
      });
      shard.on('dispatch', (d) => {
        if (this.#options.settleEvents) point.dispatched(d);
        this.emit('dispatch', d);
      });
      shard.on('state', (s) => this.emit('state', s));
      shard.on('error', (e) => reportError(this, e));
      const onUp = (): void => {
        readyOnce.add(id);
        if (readyOnce.size === count) settle?.resolve();
      };
      shard.on('ready', (r) => {
        point.reset(shard.session()?.seq ?? 0);
        onUp();
        this.emit('ready', r);
      });
      shard.on('resumed', (r) => {
        onUp();
        this.emit('resumed', r);
      });
      shard.on('fatal', (error) => {
        void this.#onFatal(error);
        settle?.reject(error);
      });
      this.#shards.push(shard);
    }
    // keep a rejected start() from also surfacing as an unhandled rejection
    started.catch(() => undefined);
    for (const shard of this.#shards) shard.start();
    return started;
  }

  async stop(options: StopOptions = {}): Promise<void> {
    this.#stopping = true;
    this.#cancelStart?.(new SessionsStoppedError('E_SESSIONS_STOPPED', 'session manager was stopped before every shard was ready', {}));
    await Promise.all(this.#shards.map((s) => s.stop({ resumable: options.resumable ?? true })));
    await options.settle?.();
    this.#log.info({ resumable: options.resumable ?? true }, 'shards stopped');
  }

  settle(dispatch: GatewayDispatch): void {
    if (dispatch.shard !== undefined) this.#points.get(dispatch.shard)?.settled(dispatch);
  }

  /**
   * Sessions a successor process can pass as `resumeFrom`: each resumes from the last seq up to which
   * every event was settled, so an event still in a handler is replayed rather than lost.
   */
  sessions(): SavedSession[] {
    return this.#shards.flatMap((s) => {
      const session = s.session();
      if (!session) return [];
      const point = this.#options.settleEvents ? this.#points.get(s.id)?.point() : undefined;
      if (!point) return [{ shard: s.id, ...session }];
      return [{ shard: s.id, sessionId: session.sessionId, seq: Math.min(point.seq, session.seq), ...(point.settledAbove.length > 0 ? { settledAbove: point.settledAbove } : {}) }];
    });
  }

  async setIntents(intents: number): Promise<void> {
    if (intents === this.#intents) return;
    const from = describeIntents(this.#intents);
    const to = describeIntents(intents);
    this.#intents = intents;
    // stopped shards never become READY again: waiting for them would hang
    if (this.#stopping || this.#fatal) return;
    this.#log.info({ from, to, shards: this.#shards.length }, 'intents changed: re-identifying every shard (a resume cannot change intents)');
    const waits = this.#shards.map(
      (shard) =>
        new Promise<void>((resolve, reject) => {
          const onReady = (): void => {
            cleanup();
            resolve();
          };
          const onFatal = (error: Error): void => {
            cleanup();
            reject(error);
          };
          const cleanup = (): void => {
            shard.off('ready', onReady);
            shard.off('fatal', onFatal);
          };
          shard.on('ready', onReady);
          shard.on('fatal', onFatal);
          shard.reidentify(intents, 'intents changed');
        }),
    );
    await Promise.all(waits);
    this.#log.info({ intents: to }, 'every shard re-identified with the new intents');
  }

  shards(): ShardInfo[] {
    return this.#shards.map((s) => s.info());
  }

  async #onFatal(error: GatewayFatalError): Promise<void> {
    if (this.#fatal || this.#stopping) return;
    this.#fatal = error;
    this.#log.error({ code: error.code, context: error.context }, `bot stopped: ${error.message}`);
    // the cause is the bot's, not the shard's: stop its siblings before they burn session starts too
    await Promise.all(this.#shards.map((s) => s.stop({ resumable: false })));
    this.emit('fatal', error);
  }
}
