import type { GatewayDispatch } from '../gateway/dispatch-event.ts';
import type { GatewayFatalError } from '../gateway/errors.ts';
import type { TypedEmitter } from '../gateway/event-source.ts';
import type { ShardInfo, ShardState } from '../gateway/shard.ts';

export type { GatewayBotInfo, GatewayTokenSource } from '../gateway/dispatch-event.ts';

/** Events every session manager emits (typed `on`/`emit`). */
export interface SessionManagerEvents {
  [event: string]: unknown[];
  dispatch: [dispatch: GatewayDispatch];
  ready: [info: { shard: number; sessionId: string }];
  resumed: [info: { shard: number }];
  state: [change: { shard: number; from: ShardState; to: ShardState }];
  error: [error: Error];
  /** the bot must stop (bad credentials, intents not permitted, 4914/4915, session limit); other bots are unaffected */
  fatal: [error: GatewayFatalError];
}

/**
 * Runs a bot's websocket shards. `local` runs them all in this process; a distributed manager would
 * lease them across processes behind the same contract.
 */
export interface SessionManager extends TypedEmitter<SessionManagerEvents> {
  /** Resolves when every shard is READY/RESUMED; rejects with a GatewayFatalError if the bot cannot run. */
  start(): Promise<void>;
  /** Closes every shard; with `resumable` (default) the sessions stay resumable for a successor. */
  stop(options?: { resumable?: boolean }): Promise<void>;
  /** Re-identifies every shard with new intents (a resume cannot change them); resolves when all are READY again. */
  setIntents(intents: number): Promise<void>;
  shards(): ShardInfo[];
}
