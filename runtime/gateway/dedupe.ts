import type { GatewayDispatch } from './dispatch-event.ts';

export interface EventDeduperOptions {
  /** keys remembered at most; default 10 000 */
  size?: number;
  /** how long a key is remembered; default 10 min (covers webhook redelivery and resume replay) */
  ttlMs?: number;
}

/**
 * Exactly-once gate in front of the dispatcher, shared by all transports and shards of a bot. The key
 * is the envelope id; without one, the message id plus type. Message-create events are also keyed by
 * message id, because the platform may push the same message twice under different envelope ids.
 */
export class EventDeduper {
  readonly #size: number;
  readonly #ttlMs: number;
  // insertion-ordered: the first entry is the oldest
  readonly #seen = new Map<string, number>();

  constructor(options: EventDeduperOptions = {}) {
    this.#size = options.size ?? 10_000;
    this.#ttlMs = options.ttlMs ?? 10 * 60_000;
  }

  /** true when this event was already let through (the caller drops it); otherwise records it. */
  seen(dispatch: GatewayDispatch): boolean {
    const keys = dedupeKeys(dispatch);
    if (keys.length === 0) return false;
    const now = Date.now();
    this.#evict(now);
    if (keys.some((k) => this.#seen.has(k))) return true;
    for (const k of keys) this.#seen.set(k, now + this.#ttlMs);
    while (this.#seen.size > this.#size) this.#seen.delete(this.#seen.keys().next().value!);
    return false;
  }

  /** Marks keys as seen (events a predecessor process handled: see CommittedSeq). */
  remember(keys: Iterable<string>): void {
    const expires = Date.now() + this.#ttlMs;
    for (const key of keys) this.#seen.set(key, expires);
    while (this.#seen.size > this.#size) this.#seen.delete(this.#seen.keys().next().value!);
  }

  #evict(now: number): void {
    for (const [key, expires] of this.#seen) {
      if (expires > now) break;
      this.#seen.delete(key);
    }
  }
}

/** The keys an event is deduplicated by (in memory here, and across processes in Redis). */
export function dedupeKeys(dispatch: GatewayDispatch): string[] {
  const keys: string[] = [];
  if (dispatch.id) keys.push(`e:${dispatch.id}`);
  const d = dispatch.d as { id?: unknown } | null;
  const messageId = d && typeof d === 'object' && typeof d.id === 'string' && d.id !== '' ? d.id : undefined;
  if (messageId && (!dispatch.id || dispatch.t.endsWith('MESSAGE_CREATE'))) keys.push(`m:${dispatch.t}:${messageId}`);
  return keys;
}
