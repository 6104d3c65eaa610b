import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import type { Logger } from '../logging/logger.ts';
import { silentLogger } from '../logging/logger.ts';
import { Backoff, type BackoffOptions } from '../time/backoff.ts';
import { closeAction, type FatalCode } from './close-policy.ts';
import { toDispatch, type GatewayDispatch, type GatewayEnvelope, type GatewayTokenSource } from './dispatch-event.ts';
import { GatewayFatalError } from './errors.ts';
import { sleep } from '../time/sleep.ts';
import { reportError } from '../errors/report-error.ts';

export type ShardState = 'idle' | 'connecting' | 'hello' | 'identifying' | 'resuming' | 'ready' | 'reconnecting' | 'stopped' | 'fatal';

/**
 * Paces session starts; shared by the shards of one bot (see sessions/identify-throttle.ts). A grant with a
 * `sent()` method is told when the identify/resume went out (the platform counts arrivals).
 */
export interface StartThrottle {
  wait(signal?: AbortSignal): Promise<unknown>;
}

export interface ShardOptions {
  id: number;
  count: number;
  /** gateway URL (cached by the caller: reconnects must not hammer `/gateway`) */
  gatewayUrl: () => Promise<string>;
  tokenSource: GatewayTokenSource;
  intents: number;
  /** identify `properties`; default `$os`/`$browser`/`$device` */
  properties?: Record<string, string>;
  /** paces identifies; default: none */
  identifyThrottle?: StartThrottle;
  /** paces resumes; default: none */
  resumeThrottle?: StartThrottle;
  backoff?: BackoffOptions;
  /** give up on a connection that sends no Hello within this; default 20 000 ms */
  helloTimeoutMs?: number;
  /** give up on an identify/resume without READY/RESUMED within this; default 20 000 ms */
  readyTimeoutMs?: number;
  /**
   * fraction of the heartbeat interval to wait before the first beat; default `Math.random`, so shards
   * that reconnect together do not heartbeat in lockstep (tests pass a fixed value)
   */
  heartbeatJitter?: () => number;
  /** a session to resume instead of identifying (handed over by a predecessor) */
  session?: { sessionId: string; seq: number };
  /**
   * awaited before every connection (the first and each reconnect); while it is pending nothing is
   * opened, and if it rejects the attempt counts as failed (backoff, then again). A distributed session
   * manager checks the shard's lease here.
   */
  beforeConnect?: (signal: AbortSignal) => Promise<void>;
  logger?: Logger;
}

export interface ShardInfo {
  id: number;
  count: number;
  state: ShardState;
  seq: number;
  sessionId?: string;
  latencyMs?: number;
  reconnects: number;
  lastHeartbeatAck?: number;
}

export interface ShardEvents {
  dispatch: [dispatch: GatewayDispatch];
  ready: [info: { shard: number; sessionId: string }];
  resumed: [info: { shard: number }];
  state: [change: { shard: number; from: ShardState; to: ShardState }];
  error: [error: Error];
  fatal: [error: GatewayFatalError];
}

/** How a connection ended, and therefore what the next one does. */
type Outcome =
  | { kind: 'reconnect'; reason: string; fresh?: boolean; refreshToken?: boolean }
  | { kind: 'fatal'; code: FatalCode; reason: string; closeCode?: number }
  | { kind: 'stop' };

const OP = { DISPATCH: 0, HEARTBEAT: 1, IDENTIFY: 2, RESUME: 6, RECONNECT: 7, INVALID_SESSION: 9, HELLO: 10, HEARTBEAT_ACK: 11 } as const;

/** Close code we use when we want the server to keep the session for a resume (1000/1001 end it). */
export const RESUMABLE_CLOSE_CODE = 4000;
/** How long a closing handshake may take before the socket is cut (ws itself waits 30 s, stalling stop()). */
const CLOSE_GRACE_MS = 5_000;

/**
 * One websocket session of one shard. Owns its reconnect loop: every connection ends in an Outcome
 * that decides between resume, identify, token refresh or stopping the bot; reconnects wait a
 * jittered exponential backoff and the shared start throttle, so nothing ever loops tightly.
 */
export class Shard extends EventEmitter<ShardEvents> {
  readonly id: number;
  readonly count: number;
  readonly #options: ShardOptions;
  readonly #log: Logger;
  readonly #backoff: Backoff;
  #intents: number;
  #state: ShardState = 'idle';
  #sessionId: string | undefined;
  #seq = 0;
  #reconnects = 0;
  #latencyMs: number | undefined;
  #lastAck: number | undefined;
  #authFailures = 0;
  #unansweredResumes = 0;
  #needRefresh = false;
  #stopping: Outcome | undefined;
  #loop: Promise<void> | undefined;
  readonly #life = new AbortController();
  // the live connection's finisher, so stop()/reidentify() can end it with an outcome
  #endConnection: ((outcome: Outcome, how: 'close' | 'terminate', code?: number) => void) | undefined;

  constructor(options: ShardOptions) {
    super();
    this.id = options.id;
    this.count = options.count;
    this.#options = options;
    this.#intents = options.intents;
    this.#backoff = new Backoff(options.backoff);
    this.#log = (options.logger ?? silentLogger).child({ shard: `${options.id}/${options.count}` });
    if (options.session) {
      this.#sessionId = options.session.sessionId;
      this.#seq = options.session.seq;
    }
  }

  get state(): ShardState {
    return this.#state;
  }

  info(): ShardInfo {
    const info: ShardInfo = { id: this.id, count: this.count, state: this.#state, seq: this.#seq, reconnects: this.#reconnects };
    if (this.#sessionId !== undefined) info.sessionId = this.#sessionId;
    if (this.#latencyMs !== undefined) info.latencyMs = this.#latencyMs;
    if (this.#lastAck !== undefined) info.lastHeartbeatAck = this.#lastAck;
    return info;
  }

  /** Starts the connection loop; progress is reported through events. */
  start(): void {
    if (this.#loop) return;
    this.#loop = this.#run();
  }

  /**
   * Ends the connection and the loop. With `resumable` (default) the socket is closed with a non-1000
   * code so the session survives for a successor; `session()` then gives what it needs. `abandon` drops
   * the socket without a close frame: for a shard whose session another process may already have
   * resumed, which nothing we send must touch.
   */
  async stop(options: { resumable?: boolean; abandon?: boolean } = {}): Promise<void> {
    const resumable = options.resumable ?? true;
    this.#stopping = { kind: 'stop' };
    this.#life.abort(new Error('shard stopped'));
    this.#endConnection?.({ kind: 'stop' }, options.abandon ? 'terminate' : 'close', resumable ? RESUMABLE_CLOSE_CODE : 1000);
    await this.#loop;
    if (this.#state !== 'fatal') this.#setState('stopped');
  }

  /** The session a successor can resume, if any. */
  session(): { sessionId: string; seq: number } | undefined {
    return this.#sessionId === undefined ? undefined : { sessionId: this.#sessionId, seq: this.#seq };
  }

  /** Drops the session and identifies again with new intents (a resume cannot change intents). */
  reidentify(intents: number, reason: string): void {
    this.#intents = intents;
    this.#clearSession();
    this.#log.info({ reason }, 're-identifying');
    this.#endConnection?.({ kind: 'reconnect', reason, fresh: true }, 'close', RESUMABLE_CLOSE_CODE);
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      let outcome: Outcome;
      try {
        outcome = await this.#connectOnce();
      } catch (error) {
        // only programming errors get here; keep the shard alive and say so
        reportError(this, error as Error);
        outcome = { kind: 'reconnect', reason: `internal error: ${(error as Error).message}` };
      }
      if (outcome.kind === 'stop' || this.#stopping) break;
      if (outcome.kind === 'fatal') {
        this.#clearSession();
        this.#setState('fatal');
        const error = new GatewayFatalError(outcome.code, `shard ${this.id}/${this.count} stopped: ${outcome.reason}`, {
          shard: this.id,
          shardCount: this.count,
          ...(outcome.closeCode === undefined ? {} : { closeCode: outcome.closeCode }),
        });
        this.#log.error({ code: outcome.code, closeCode: outcome.closeCode }, outcome.reason);
        this.emit('fatal', error);
        return;
      }
      if (outcome.fresh) this.#clearSession();
      if (outcome.refreshToken) this.#needRefresh = true;
      this.#reconnects++;
      this.#setState('reconnecting');
      const delay = this.#backoff.next();
      this.#log.info({ reason: outcome.reason, delayMs: delay, resume: this.#sessionId !== undefined }, 'reconnecting');
      try {
        await sleep(delay, this.#life.signal);
      } catch {
        break;
      }
    }
  }

  /** One websocket connection, from connect to close. Never rejects on network trouble. */
  async #connectOnce(): Promise<Outcome> {
    this.#setState('connecting');
    if (this.#needRefresh) {
      try {
        await this.#options.tokenSource.refresh();
        this.#needRefresh = false;
      } catch (error) {
        return this.#tokenFailure(error);
      }
    }
    if (this.#options.beforeConnect) {
      try {
        await this.#options.beforeConnect(this.#life.signal);
      } catch (error) {
        if (this.#stopping) return this.#stopping;
        return { kind: 'reconnect', reason: `not connecting: ${(error as Error).message}` };
      }
      if (this.#stopping) return this.#stopping;
    }
    let url: string;
    try {
      url = await this.#options.gatewayUrl();
    } catch (error) {
      return { kind: 'reconnect', reason: `gateway URL unavailable: ${(error as Error).message}` };
    }
    if (this.#stopping) return this.#stopping;

    return new Promise<Outcome>((resolve) => {
      const ws = new WebSocket(url, { handshakeTimeout: this.#options.helloTimeoutMs ?? 20_000 });
      const conn = new AbortController();
      let outcome: Outcome | undefined;
      let heartbeat: NodeJS.Timeout | undefined;
      let helloTimer: NodeJS.Timeout | undefined;
      let readyTimer: NodeJS.Timeout | undefined;
      let closeTimer: NodeJS.Timeout | undefined;
      let awaitingAck = false;
      let missedAcks = 0;
      let sentAt = 0;
      let resumeSent = false;
      let established = false;
      let sessionStarted = false;

      const clearTimers = (): void => {
        // the first (jittered) beat is a timeout, later ones an interval: clearInterval ends either
        clearInterval(heartbeat);
        clearTimeout(helloTimer);
        clearTimeout(readyTimer);
      };

      const end = (result: Outcome, how: 'close' | 'terminate', code?: number): void => {
        if (outcome) return;
        outcome = result;
        clearTimers();
        conn.abort();
        if (how === 'terminate' || ws.readyState === WebSocket.CONNECTING) ws.terminate();
        else if (ws.readyState === WebSocket.OPEN) {
          ws.close(code ?? RESUMABLE_CLOSE_CODE);
          closeTimer = setTimeout(() => ws.terminate(), CLOSE_GRACE_MS);
        }
      };
      this.#endConnection = end;

      const send = (payload: unknown): void => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(payload));
      };

      const beat = (): void => {
        if (awaitingAck) {
          missedAcks++;
          if (missedAcks >= 2) {
            end({ kind: 'reconnect', reason: 'zombie connection: 2 heartbeats not acknowledged' }, 'terminate');
            return;
          }
        }
        awaitingAck = true;
        sentAt = Date.now();
        send({ op: OP.HEARTBEAT, d: this.#sessionId === undefined ? null : this.#seq });
      };

      const startSession = async (): Promise<void> => {
        const resuming = this.#sessionId !== undefined;
        const throttle = resuming ? this.#options.resumeThrottle : this.#options.identifyThrottle;
        this.#setState(resuming ? 'resuming' : 'identifying');
        let grant: unknown;
        try {
          grant = await throttle?.wait(conn.signal);
        } catch {
          return; // connection ended while queued
        }
        let token: string;
        try {
          token = await this.#options.tokenSource.authorization();
        } catch (error) {
          end(this.#tokenFailure(error), 'close', RESUMABLE_CLOSE_CODE);
          return;
        }
        // the socket may have closed while the token was fetched: arming the ready timer now would leak it
        if (outcome || conn.signal.aborted) return;
        readyTimer = setTimeout(() => {
          end({ kind: 'reconnect', reason: `no ${resuming ? 'RESUMED' : 'READY'} within ${this.#options.readyTimeoutMs ?? 20_000} ms` }, 'terminate');
        }, this.#options.readyTimeoutMs ?? 20_000);
        if (resuming && this.#sessionId !== undefined) {
          resumeSent = true;
          send({ op: OP.RESUME, d: { token, session_id: this.#sessionId, seq: this.#seq } });
        } else {
          send({
            op: OP.IDENTIFY,
            d: { token, intents: this.#intents, shard: [this.id, this.count], properties: this.#options.properties ?? defaultProperties() },
          });
        }
        (grant as { sent?: () => void } | undefined)?.sent?.();
      };

      const onDispatch = (frame: GatewayEnvelope): void => {
        if (frame.t === 'READY') {
          const d = frame.d as { session_id?: unknown } | null;
          if (!d || typeof d.session_id !== 'string') {
            end({ kind: 'reconnect', reason: 'READY without session_id', fresh: true }, 'close', 1000);
            return;
          }
          // the configured shard pair is kept: READY's `shard` is not trusted (docs/protocol.md §6.3)
          this.#sessionId = d.session_id;
          this.#seq = typeof frame.s === 'number' ? frame.s : 0;
          this.#established();
          established = true;
          clearTimeout(readyTimer);
          this.#setState('ready');
          this.#log.info({ sessionId: d.session_id, intents: this.#intents }, 'identified (READY)');
          this.emit('ready', { shard: this.id, sessionId: d.session_id });
          return;
        }
        if (frame.t === 'RESUMED') {
          this.#established();
          established = true;
          clearTimeout(readyTimer);
          this.#setState('ready');
          this.#log.info({ sessionId: this.#sessionId, seq: this.#seq }, 'resumed (RESUMED)');
          this.emit('resumed', { shard: this.id });
          return;
        }
        if (typeof frame.s === 'number') {
          // a replay overlapping what we already have: the seq says we emitted it
          if (frame.s <= this.#seq && this.#sessionId !== undefined) {
            this.#log.debug({ s: frame.s, seq: this.#seq, t: frame.t }, 'dropping replayed dispatch already seen');
            return;
          }
          this.#seq = frame.s;
        }
        const dispatch = toDispatch(frame, 'websocket', this.id);
        try {
          this.emit('dispatch', dispatch);
        } catch (error) {
          this.#log.error({ err: error, t: frame.t }, 'dispatch listener threw');
          reportError(this, error as Error);
        }
      };

      ws.on('open', () => {
        this.#setState('hello');
        helloTimer = setTimeout(() => {
          end({ kind: 'reconnect', reason: `no Hello within ${this.#options.helloTimeoutMs ?? 20_000} ms` }, 'terminate');
        }, this.#options.helloTimeoutMs ?? 20_000);
      });

      ws.on('message', (data) => {
        if (outcome) return;
        let frame: GatewayEnvelope;
        try {
          frame = JSON.parse(data.toString()) as GatewayEnvelope;
        } catch {
          this.#log.warn('ignoring a frame that is not JSON');
          return;
        }
        switch (frame.op) {
          case OP.HELLO: {
            clearTimeout(helloTimer);
            // a repeated Hello must neither stack a second heartbeat timer nor identify twice
            if (sessionStarted) break;
            sessionStarted = true;
            const interval = Number((frame.d as { heartbeat_interval?: unknown } | null)?.heartbeat_interval);
            if (Number.isFinite(interval) && interval > 0) {
              const jitter = Math.min(1, Math.max(0, (this.#options.heartbeatJitter ?? Math.random)()));
              heartbeat = setTimeout(() => {
                heartbeat = setInterval(beat, interval);
                beat();
              }, Math.round(interval * jitter));
            }
            void startSession();
            break;
          }
          case OP.HEARTBEAT_ACK:
            awaitingAck = false;
            missedAcks = 0;
            this.#lastAck = Date.now();
            this.#latencyMs = this.#lastAck - sentAt;
            break;
          case OP.HEARTBEAT:
            send({ op: OP.HEARTBEAT, d: this.#sessionId === undefined ? null : this.#seq });
            break;
          case OP.DISPATCH:
            onDispatch(frame);
            break;
          case OP.RECONNECT:
            end({ kind: 'reconnect', reason: 'server requested reconnect (op 7)' }, 'close', RESUMABLE_CLOSE_CODE);
            break;
          case OP.INVALID_SESSION:
            // QQ documents no `d`; when the server explicitly says the session is resumable (Discord
            // style `d: true`) a resume recovers the gap, and a failed one falls back to identify anyway
            if (frame.d === true && this.#sessionId !== undefined) {
              end({ kind: 'reconnect', reason: 'invalid session (op 9, resumable)' }, 'close', RESUMABLE_CLOSE_CODE);
            } else {
              end({ kind: 'reconnect', reason: 'invalid session (op 9)', fresh: true }, 'close', 1000);
            }
            break;
          default:
            this.#log.debug({ op: frame.op }, 'ignoring unknown opcode');
        }
      });

      ws.on('error', (error) => {
        // 'close' follows; the error only explains it
        this.#log.debug({ err: error.message }, 'websocket error');
      });

      ws.on('close', (code, reasonBuf) => {
        clearTimers();
        clearTimeout(closeTimer);
        conn.abort();
        if (this.#endConnection === end) this.#endConnection = undefined;
        const serverClosed = outcome === undefined && code !== 1005 && code !== 1006;
        let result: Outcome = outcome ?? this.#fromCloseCode(code, reasonBuf.toString(), resumeSent && !established);
        if (resumeSent && !established && result.kind === 'reconnect' && !result.fresh && !result.refreshToken) {
          // A resume the server refused falls back to identify at once (a rejected session would otherwise
          // loop). One that merely got no answer (drop, our timeout) is retried: the session is likely
          // alive and holds the events we missed; after three such tries we identify anyway.
          this.#unansweredResumes = serverClosed ? 0 : this.#unansweredResumes + 1;
          if (serverClosed || this.#unansweredResumes >= 3) {
            this.#unansweredResumes = 0;
            result = { ...result, reason: `${result.reason}; resume failed, identifying`, fresh: true };
          }
        }
        if (this.#stopping) result = this.#stopping;
        resolve(result);
      });
    });
  }

  #fromCloseCode(code: number, reason: string, duringResume: boolean): Outcome {
    const policy = closeAction(code);
    const why = reason ? `${policy.reason}: ${reason}` : policy.reason;
    switch (policy.action) {
      case 'fatal':
        return { kind: 'fatal', code: policy.code, reason: why, closeCode: code };
      case 'refresh-identify':
        this.#authFailures++;
        if (this.#authFailures >= 2) {
          return { kind: 'fatal', code: 'E_GATEWAY_AUTH', reason: `${why}, again after refreshing the token: check the AppID and secret`, closeCode: code };
        }
        return { kind: 'reconnect', reason: `${why}: refreshing the token`, fresh: !duringResume, refreshToken: true };
      case 'identify':
        return { kind: 'reconnect', reason: why, fresh: true };
      case 'resume':
        return { kind: 'reconnect', reason: why };
    }
  }

  #tokenFailure(error: unknown): Outcome {
    const code = String((error as { code?: unknown })?.code ?? '');
    const message = (error as Error)?.message ?? String(error);
    // credentials the token endpoint rejects will not become valid by retrying (TokenError.retryable)
    if ((error as { retryable?: unknown })?.retryable === false || /AUTH|CREDENTIAL/i.test(code)) {
      return { kind: 'fatal', code: 'E_GATEWAY_AUTH', reason: `access token refused (${code}): ${message}` };
    }
    return { kind: 'reconnect', reason: `access token unavailable: ${message}` };
  }

  #established(): void {
    this.#backoff.reset();
    this.#authFailures = 0;
    this.#unansweredResumes = 0;
  }

  #clearSession(): void {
    this.#sessionId = undefined;
    this.#seq = 0;
  }

  #setState(to: ShardState): void {
    const from = this.#state;
    if (from === to) return;
    this.#state = to;
    this.emit('state', { shard: this.id, from, to });
  }
}

function defaultProperties(): Record<string, string> {
  return { $os: process.platform, $browser: 'qqbot-runtime', $device: 'qqbot-runtime' };
}
