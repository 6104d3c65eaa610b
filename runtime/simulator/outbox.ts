import type { ReplyScene } from './message-ledger.ts';

/** One message a bot posted through the OpenAPI, in the order the simulator accepted them. */
export interface OutboxEntry {
  /** monotonically increasing, from 1; `GET /_simulator/outbox?since=n` returns entries after n */
  n: number;
  /** ISO time */
  at: string;
  appId: string;
  scene: ReplyScene;
  /** `{channel_id}`, `{guild_id}` (DM), `{group_openid}` or `{openid}` */
  target: Record<string, string>;
  /** the request body as the bot sent it */
  body: Record<string, unknown>;
  /** id the platform gave the message */
  id: string;
  msg_id?: string;
  event_id?: string;
  msg_seq?: number;
  /** answered a msg_id/event_id (false: a proactive message, admitted by the `proactive` option) */
  passive: boolean;
  /** passive sends: ms from when the platform pushed the answered message or event to this send */
  latencyMs?: number;
  /** the OpenAPI route, e.g. `POST /v2/groups/{group_openid}/messages` */
  route: string;
  recalled?: boolean;
}

export interface OutboxSnapshot { entries: OutboxEntry[]; next: number }

const MAX_ENTRIES = 50_000;

export class Outbox {
  #entries: OutboxEntry[] = [];
  #next: number;

  constructor(restored?: OutboxSnapshot) {
    this.#entries = restored ? restored.entries.map((e) => ({ ...e })) : [];
    this.#next = restored?.next ?? 1;
  }

  add(entry: Omit<OutboxEntry, 'n' | 'at'>): OutboxEntry {
    const full: OutboxEntry = { n: this.#next++, at: new Date().toISOString(), ...entry };
    this.#entries.push(full);
    if (this.#entries.length > MAX_ENTRIES) this.#entries.splice(0, this.#entries.length - MAX_ENTRIES);
    return full;
  }

  since(n = 0): OutboxEntry[] {
    // entries are sorted by n: binary search keeps polling cheap in long benchmark runs
    let lo = 0;
    let hi = this.#entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#entries[mid]!.n <= n) lo = mid + 1;
      else hi = mid;
    }
    return this.#entries.slice(lo);
  }

  markRecalled(id: string): void {
    for (const e of this.#entries) if (e.id === id) e.recalled = true;
  }

  snapshot(): OutboxSnapshot {
    return { entries: this.#entries.map((e) => ({ ...e })), next: this.#next };
  }
}
