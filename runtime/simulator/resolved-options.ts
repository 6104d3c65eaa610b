/** The simulator's options with defaults applied and checked (options.ts resolveOptions): what its parts are given. */
import type { ChannelSendRate } from './channel-send-rate.ts';
import type { ReplyScene } from './message-ledger.ts';
import type { ProactiveMode, ProactiveQuotas } from './proactive-quota.ts';
import type { SimulatorBot } from './simulator-bot.ts';

export interface ResolvedOptions {
  host: string;
  port: number;
  allowedHosts: string[];
  bots: SimulatorBot[];
  tokenLifetimeSec: number;
  heartbeatIntervalMs: number;
  sessionTimeoutMs: number;
  recommendedShards: number;
  sessionStartLimit: { total: number; remaining: number; maxConcurrency: number; resetAfterMs: number };
  identifyWindowMs: number;
  replayBufferSize: number;
  resumeWindowMs: number;
  maxFrameBytes: number;
  replyWindowMs: Record<ReplyScene, number>;
  channelSendRate: ChannelSendRate | false;
  apiLatencyMs: number;
  webhookMaxAttempts: number;
  proactive: ProactiveMode;
  proactiveQuotas: ProactiveQuotas;
  printCredentials: boolean;
}
