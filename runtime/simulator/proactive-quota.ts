import type { ReplyScene } from './message-ledger.ts';
import { CODES, PlatformError } from './platform-error.ts';

export type ProactiveMode = 'allowed' | 'quota' | 'off';

/** §14's proactive quotas; days and months are counted in China time (UTC+8). */
export interface ProactiveQuotas {
  c2cPerUserPerMonth: number;
  groupPerGroupPerMonth: number;
  channelPerChannelPerDay: number;
  /** distinct channels of one guild a bot may push to per day */
  channelsPerGuildPerDay: number;
  dmPerUserPerDay: number;
  dmPerDay: number;
}

export const DEFAULT_PROACTIVE_QUOTAS: Readonly<ProactiveQuotas> = Object.freeze({
  c2cPerUserPerMonth: 4,
  groupPerGroupPerMonth: 4,
  channelPerChannelPerDay: 20,
  channelsPerGuildPerDay: 2,
  dmPerUserPerDay: 2,
  dmPerDay: 200,
});

/** Where an unsolicited send goes: channel id, DM guild id, group openid or user openid. */
export interface ProactiveSend { appId: string; scene: ReplyScene; target: string; /** guild of the channel (guild scene) */ guildId?: string }

export interface ProactiveSnapshot { counts: Array<[string, number]>; channels: Array<[string, string[]]> }

/** The platform counts days and months in China time. */
const CHINA_OFFSET_MS = 8 * 3600_000;
/** Counters of past days and months are dropped once there are this many keys. */
const PRUNE_AT = 10_000;

/**
 * §14 for sends without msg_id/event_id. `off` refuses them all (the platform's state since
 * 2025-04-21), `quota` enforces the per-scene quotas, `allowed` only counts.
 */
export class ProactiveQuota {
  readonly #mode: ProactiveMode;
  readonly #limits: ProactiveQuotas;
  readonly #counts: Map<string, number>;
  /** per guild and day: the channels pushed to (the "2 channels per guild per day" rule) */
  readonly #channels: Map<string, Set<string>>;

  constructor(mode: ProactiveMode, limits: ProactiveQuotas, restored?: ProactiveSnapshot) {
    this.#mode = mode;
    this.#limits = limits;
    this.#counts = new Map(restored?.counts ?? []);
    this.#channels = new Map((restored?.channels ?? []).map(([k, v]) => [k, new Set(v)]));
  }

  /** Checks one proactive send and counts it; throws the platform's error when it is refused. */
  admit(send: ProactiveSend, now = Date.now()): void {
    const china = new Date(now + CHINA_OFFSET_MS).toISOString();
    const day = china.slice(0, 10);
    const month = china.slice(0, 7);
    if (this.#counts.size + this.#channels.size > PRUNE_AT) this.#prune(day, month);
    const { appId, scene, target } = send;
    if (this.#mode === 'off') throw refusedWhenOff(scene);

    // every check runs before anything is counted: a refused send uses no quota
    const bumps: string[] = [];
    const check = (key: string, limit: number, code: number, message: string): void => {
      if ((this.#counts.get(key) ?? 0) >= limit && this.#mode === 'quota') throw new PlatformError(400, code, message, { errCode: code });
      bumps.push(key);
    };
    let channelSet: { key: string; channel: string } | undefined;
    switch (scene) {
      case 'c2c':
        check(`${appId}|c2c|${target}|${month}`, this.#limits.c2cPerUserPerMonth, CODES.sendRateLimited, 'msg limit exceed');
        break;
      case 'group':
        check(`${appId}|group|${target}|${month}`, this.#limits.groupPerGroupPerMonth, CODES.sendRateLimited, 'msg limit exceed');
        break;
      case 'guild': {
        check(`${appId}|channel|${target}|${day}`, this.#limits.channelPerChannelPerDay, CODES.proactiveChannelLimit, '子频道主动消息数限频');
        const key = `${appId}|guild|${send.guildId ?? ''}|${day}`;
        const channels = this.#channels.get(key);
        if (this.#mode === 'quota' && !channels?.has(target) && (channels?.size ?? 0) >= this.#limits.channelsPerGuildPerDay) {
          throw new PlatformError(400, CODES.proactiveChannelCountLimit, '主动消息推送超过限制的子频道数', { errCode: CODES.proactiveChannelCountLimit });
        }
        channelSet = { key, channel: target };
        break;
      }
      case 'direct':
        check(`${appId}|dm|${target}|${day}`, this.#limits.dmPerUserPerDay, CODES.proactiveDmLimit, '私信主动消息数限频');
        check(`${appId}|dm-total|${day}`, this.#limits.dmPerDay, CODES.proactiveDmTotalLimit, '私信主动消息总量限频');
        break;
    }
    for (const key of bumps) this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
    if (channelSet) {
      const set = this.#channels.get(channelSet.key) ?? new Set<string>();
      set.add(channelSet.channel);
      this.#channels.set(channelSet.key, set);
    }
  }

  /** Counters of the current periods, keyed `appId|scope|target|period`. */
  counts(): Record<string, number> {
    return Object.fromEntries(this.#counts);
  }

  snapshot(): ProactiveSnapshot {
    return { counts: [...this.#counts], channels: [...this.#channels].map(([k, v]) => [k, [...v]]) };
  }

  #prune(day: string, month: string): void {
    const current = (key: string) => key.endsWith(`|${day}`) || key.endsWith(`|${month}`);
    for (const key of this.#counts.keys()) if (!current(key)) this.#counts.delete(key);
    for (const key of this.#channels.keys()) if (!current(key)) this.#channels.delete(key);
  }
}

/**
 * The platform answers switched-off proactive sends with an error it does not document. Group and
 * C2C: 40034102 "主动消息失败, 无权限" (third-party reports, HTTP 400). Channel and DM: the
 * documented "proactive messages not allowed here" codes 304046 / 304048 (simulator's choice).
 */
function refusedWhenOff(scene: ReplyScene): PlatformError {
  if (scene === 'guild') return new PlatformError(400, CODES.proactiveChannelNotAllowed, '不允许在此子频道发主动消息 (proactive messages are switched off)', { errCode: CODES.proactiveChannelNotAllowed });
  if (scene === 'direct') return new PlatformError(400, CODES.proactiveGuildNotAllowed, '不允许在此频道发主动消息 (proactive messages are switched off)', { errCode: CODES.proactiveGuildNotAllowed });
  return new PlatformError(400, CODES.proactiveNoPermission, '主动消息失败, 无权限', { errCode: CODES.proactiveNoPermission });
}
