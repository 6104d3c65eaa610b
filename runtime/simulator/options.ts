import type { Logger } from '../logging/logger.ts';
import type { ChannelSendRate } from './channel-send-rate.ts';
import { SimulatorConfigError } from './errors.ts';
import type { ReplyScene } from './message-ledger.ts';
import { DEFAULT_PROACTIVE_QUOTAS, type ProactiveMode, type ProactiveQuotas } from './proactive-quota.ts';
import type { ResolvedOptions } from './resolved-options.ts';
import { DEFAULT_BOT, type SimulatorBot } from './simulator-bot.ts';
import type { SimulatorState } from './state.ts';

/**
 * The simulator's public options. They name its saved state, which names every part's snapshot, so
 * the parts take ResolvedOptions (resolved-options.ts) and never import this file.
 */
export interface SimulatorOptions {
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /**
   * Host names the control API (`/_simulator/*`) answers besides loopback names, IP addresses and
   * `host`: e.g. a container's service name. Any other Host header is refused (DNS rebinding).
   * @defaultValue none
   */
  allowedHosts?: string[];
  /** @defaultValue 0 (ephemeral) */
  port?: number;
  /** @defaultValue one bot 1020000001 / simulator-secret / simulator-token */
  bots?: SimulatorBot[];
  /** access-token lifetime; the endpoint mints a new one only in the last 60 s. @defaultValue 7200 */
  tokenLifetimeSec?: number;
  /** @defaultValue 41250 */
  heartbeatIntervalMs?: number;
  /** a connection that sends nothing (no heartbeat) for this long is closed with 4009. @defaultValue 2 × heartbeatIntervalMs */
  sessionTimeoutMs?: number;
  /** `shards` in /gateway/bot. @defaultValue 1 */
  recommendedShards?: number;
  /**
   * `session_start_limit` (§3). An identify with no starts remaining is closed with 4008; the count
   * goes back to `total` every `resetAfterMs`. @defaultValue total 1000, remaining = total,
   * maxConcurrency 1, resetAfterMs 24 h
   */
  sessionStartLimit?: { total: number; remaining?: number; maxConcurrency: number; resetAfterMs?: number };
  /** identifies allowed per bot: maxConcurrency per this window, else close 4008. @defaultValue 5000 */
  identifyWindowMs?: number;
  /** dispatches kept per session for resume. @defaultValue 10000 */
  replayBufferSize?: number;
  /** how long a disconnected session stays resumable (and keeps buffering). @defaultValue 300000 */
  resumeWindowMs?: number;
  /** a client frame larger than this closes the connection with 4002. @defaultValue 16384 */
  maxFrameBytes?: number;
  /** passive-reply windows per scene (§14). @defaultValue c2c 60 min, others 5 min */
  replyWindowMs?: Partial<Record<ReplyScene, number>>;
  /**
   * Unsolicited sends (no msg_id / event_id, §14). `off`: refused, as the platform does since
   * 2025-04-21; `quota`: the documented per-scene quotas apply (see `proactiveQuotas`);
   * `allowed`: accepted and only counted. @defaultValue 'off'
   */
  proactive?: ProactiveMode;
  /** limits for `proactive: 'quota'`. @defaultValue the platform's numbers, see DEFAULT_PROACTIVE_QUOTAS */
  proactiveQuotas?: Partial<ProactiveQuotas>;
  /** webhook delivery attempts per event before giving up. @defaultValue 5 */
  webhookMaxAttempts?: number;
  /**
   * Messages a bot may post into one guild channel within `perMs`, passive or not (§14: 5 per
   * second); one more is refused with HTTP 429 and code 20028. `false` turns the rule off.
   * @defaultValue { messages: 5, perMs: 1000 }
   */
  channelSendRate?: ChannelSendRate | false;
  /** the OpenAPI answers after this long (the platform's latency), so concurrency shows. @defaultValue 0 */
  apiLatencyMs?: number;
  /** state from `Simulator.exportState()` of a previous instance: sessions stay resumable across a restart */
  state?: SimulatorState;
  /** log the bots' simulator credentials at start (for the CLI); embedders may turn it off. @defaultValue true */
  printCredentials?: boolean;
  logger?: Logger;
}

function nonNegativeInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0) throw new SimulatorConfigError(`simulator option ${name} must be a non-negative integer`, { option: name });
  return value;
}

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new SimulatorConfigError(`simulator option ${name} must be a positive number`, { option: name });
  return value;
}

export function resolveOptions(options: SimulatorOptions): ResolvedOptions {
  const bots = options.bots && options.bots.length > 0 ? options.bots.map((b) => ({ ...b })) : [{ ...DEFAULT_BOT }];
  const seen = new Set<string>();
  for (const bot of bots) {
    if (!bot.appId || !bot.secret) throw new SimulatorConfigError('every simulator bot needs an appId and a secret', { appId: bot.appId });
    if (seen.has(bot.appId)) throw new SimulatorConfigError(`simulator bot ${bot.appId} is listed twice`, { appId: bot.appId });
    seen.add(bot.appId);
  }
  const heartbeatIntervalMs = positiveInt('heartbeatIntervalMs', options.heartbeatIntervalMs, 41250);
  const limit = options.sessionStartLimit;
  const total = positiveInt('sessionStartLimit.total', limit?.total, 1000);
  const remaining = nonNegativeInt('sessionStartLimit.remaining', limit?.remaining, total);
  if (remaining > total) throw new SimulatorConfigError('simulator option sessionStartLimit.remaining must not exceed total', { option: 'sessionStartLimit.remaining' });
  const proactive = options.proactive ?? 'off';
  if (!['allowed', 'quota', 'off'].includes(proactive)) throw new SimulatorConfigError('simulator option proactive must be allowed, quota or off', { option: 'proactive' });
  const proactiveQuotas = { ...DEFAULT_PROACTIVE_QUOTAS };
  for (const [key, value] of Object.entries(options.proactiveQuotas ?? {}) as Array<[keyof ProactiveQuotas, number | undefined]>) {
    if (!(key in DEFAULT_PROACTIVE_QUOTAS)) throw new SimulatorConfigError(`unknown simulator option proactiveQuotas.${key}`, { option: `proactiveQuotas.${key}` });
    proactiveQuotas[key] = nonNegativeInt(`proactiveQuotas.${key}`, value, DEFAULT_PROACTIVE_QUOTAS[key]);
  }
  return {
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 0,
    allowedHosts: [...(options.allowedHosts ?? [])],
    bots,
    tokenLifetimeSec: positiveInt('tokenLifetimeSec', options.tokenLifetimeSec, 7200),
    heartbeatIntervalMs,
    sessionTimeoutMs: positiveInt('sessionTimeoutMs', options.sessionTimeoutMs, heartbeatIntervalMs * 2),
    recommendedShards: positiveInt('recommendedShards', options.recommendedShards, 1),
    sessionStartLimit: {
      total, remaining, maxConcurrency: positiveInt('sessionStartLimit.maxConcurrency', limit?.maxConcurrency, 1),
      resetAfterMs: positiveInt('sessionStartLimit.resetAfterMs', limit?.resetAfterMs, 86_400_000),
    },
    identifyWindowMs: positiveInt('identifyWindowMs', options.identifyWindowMs, 5000),
    replayBufferSize: positiveInt('replayBufferSize', options.replayBufferSize, 10000),
    resumeWindowMs: positiveInt('resumeWindowMs', options.resumeWindowMs, 300_000),
    maxFrameBytes: positiveInt('maxFrameBytes', options.maxFrameBytes, 16384),
    replyWindowMs: { c2c: 60 * 60_000, group: 5 * 60_000, guild: 5 * 60_000, direct: 5 * 60_000, ...options.replyWindowMs },
    webhookMaxAttempts: positiveInt('webhookMaxAttempts', options.webhookMaxAttempts, 5),
    apiLatencyMs: nonNegativeInt('apiLatencyMs', options.apiLatencyMs, 0),
    channelSendRate: options.channelSendRate === false ? false : {
      messages: positiveInt('channelSendRate.messages', options.channelSendRate?.messages, 5),
      perMs: positiveInt('channelSendRate.perMs', options.channelSendRate?.perMs, 1000),
    },
    proactive,
    proactiveQuotas,
    printCredentials: options.printCredentials ?? true,
  };
}
