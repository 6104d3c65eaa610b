import type { BackoffOptions } from '../time/backoff.ts';
import type { EventEmitter } from 'node:events';
import type { GatewayBotInfo, GatewayDispatch, GatewayTokenSource } from '../gateway/dispatch-event.ts';
import type { ShardEvents, ShardInfo, ShardOptions } from '../gateway/shard.ts';
import type { Logger } from '../logging/logger.ts';

export type { GatewayBotInfo, GatewayTokenSource } from '../gateway/dispatch-event.ts';

/** What every session manager takes. */
export interface SessionManagerOptions {
  /** `GET /gateway/bot` (OpenAPIClient#gatewayBot) */
  gatewayInfo: () => Promise<GatewayBotInfo>;
  tokenSource: GatewayTokenSource;
  intents: number;
  /** `auto` takes `/gateway/bot`'s recommendation; default `auto` */
  shards?: 'auto' | number;
  logger?: Logger;
  /** reconnect backoff per shard; default 1 s … 60 s */
  backoff?: BackoffOptions;
  /** the platform's identify window; default 5 000 ms (docs/protocol.md §7) */
  identifyWindowMs?: number;
  /** identify `properties` */
  properties?: Record<string, string>;
  /**
   * true: the consumer calls `settle()` for every dispatch once it is handled, and a resume point never
   * skips an event still in a handler. Default false: the point is the last event received.
   */
  settleEvents?: boolean;
  /** per connection; default 20 000 ms */
  helloTimeoutMs?: number;
  /** per identify/resume; default 20 000 ms */
  readyTimeoutMs?: number;
}

/** The options a manager passes through to each of its shards as they are. */
export function shardTuning(options: SessionManagerOptions): Pick<ShardOptions, 'properties' | 'backoff' | 'helloTimeoutMs' | 'readyTimeoutMs'> {
  return {
    ...(options.properties ? { properties: options.properties } : {}),
    ...(options.backoff ? { backoff: options.backoff } : {}),
    ...(options.helloTimeoutMs ? { helloTimeoutMs: options.helloTimeoutMs } : {}),
    ...(options.readyTimeoutMs ? { readyTimeoutMs: options.readyTimeoutMs } : {}),
  };
}

/** A change to the shard leases this process holds (Redis sessions). */
export interface LeaseChange {
  shard: number;
  /**
   * acquired: taken (fresh, moved here by a release, taken over from a process that stopped renewing,
   * or its own record); released: handed over; lost: someone else holds it now; reclaimed: the lease had
   * lapsed (Redis restarted or unreachable) and nobody had taken it
   */
  change: 'acquired' | 'released' | 'lost' | 'reclaimed';
  how?: 'fresh' | 'moved' | 'takeover' | 'own';
  fence: number;
  /** the shards held here after the change */
  held: number[];
}

/**
 * Events every session manager emits: the same as one shard's, for all of the bot's shards. `fatal`
 * means the bot must stop (bad credentials, intents not permitted, 4914/4915, session limit).
 * Distributed managers add lease changes, events refused by fencing, and Redis going and coming.
 */
export interface SessionManagerEvents extends ShardEvents {
  lease: [change: LeaseChange];
  fenced: [refused: { shard: number; dispatch: GatewayDispatch }];
  redis: [state: { up: boolean }];
}

export interface StopOptions {
  /** default true: close so that the sessions stay resumable for a successor */
  resumable?: boolean;
  /**
   * awaited after the shards are closed and before their resume points are taken: the bot finishes
   * the events already handed out, so the point a successor resumes from covers them
   */
  settle?: () => Promise<unknown>;
}

/** One process of a bot and the shards it holds (Redis sessions). */
export interface ClusterProcess {
  id: string;
  host: string;
  pid: number;
  startedAt: number;
  shards: number[];
  /** this process */
  self: boolean;
  /** holds leases but its heartbeat expired (dead or paused): its shards free up when the leases do */
  stale: boolean;
}

/** Every process of a bot, read from Redis on the last tick. */
export interface ClusterView {
  processId: string;
  shardCount: number;
  processes: ClusterProcess[];
  /** shards no process holds right now */
  unowned: number[];
  /** epoch ms of the read */
  updatedAt: number;
  redis: { up: boolean; url: string; outages: number; downSince?: number };
}

/**
 * Runs a bot's websocket shards. `local` runs them all in this process; `redis` leases them across the
 * bot's processes behind the same contract.
 */
export interface SessionManager extends EventEmitter<SessionManagerEvents> {
  /** Resolves when this process's shards are READY/RESUMED; rejects with a GatewayFatalError if the bot cannot run. */
  start(): Promise<void>;
  /** Closes every shard; with `resumable` (default) the sessions stay resumable for a successor. */
  stop(options?: StopOptions): Promise<void>;
  /** Re-identifies every shard with new intents (a resume cannot change them); resolves when all are READY again. */
  setIntents(intents: number): Promise<void>;
  /** shards running in this process */
  shards(): ShardInfo[];
  /** An event that came from this manager is handled (or dropped with a reason): it moves the resume point. */
  settle(dispatch: GatewayDispatch): void;
  /**
   * Just before an event goes to the plugins: may this process still dispatch it? (Redis sessions: the
   * lease it came under is still held here; refused events are reported as `fenced`.)
   */
  admit?(dispatch: GatewayDispatch): boolean | Promise<boolean>;
  /** the bot's processes and their shards (Redis sessions only) */
  cluster?(): ClusterView | undefined;
}
