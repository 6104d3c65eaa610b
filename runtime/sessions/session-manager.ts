import type { TypedEmitter } from '../gateway/event-source.ts';
import type { ShardEvents, ShardInfo } from '../gateway/shard.ts';

export type { GatewayBotInfo, GatewayTokenSource } from '../gateway/dispatch-event.ts';

/**
 * Events every session manager emits: the same as one shard's, for all of the bot's shards. `fatal`
 * means the bot must stop (bad credentials, intents not permitted, 4914/4915, session limit).
 */
export type SessionManagerEvents = ShardEvents;

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
