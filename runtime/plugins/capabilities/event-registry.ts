/**
 * Events the dispatcher handed to plugins, under an unguessable `ref`. The reply router finds the
 * source event here (route, window, msg_seq); the ref is what `SandboxEvent.ref` carries.
 * Reply bookkeeping lives in a thread per (bot, source id), so every plugin answering one message,
 * and a duplicate delivery of it, share one msg_seq sequence and one reply count.
 */
import { randomUUID } from 'node:crypto';
import { isReplyRoute, replyRouteFor, type NoReplyRoute, type ReplyRoute } from './reply-route.ts';

export interface ReplyThread {
  /** last msg_seq handed out */
  seq: number;
  /** replies sent or in flight */
  replies: number;
  /** INTERACTION_CREATE: acknowledged (by a plugin or the host) */
  acked: boolean;
}

export interface EventRecord {
  ref: string;
  bot: string;
  type: string;
  id: string;
  data: unknown;
  receivedAt: number;
  route: ReplyRoute | NoReplyRoute;
  thread: ReplyThread;
  /** finishEvent ran */
  finished: boolean;
}

export interface EventRegistryOptions {
  /** records kept at most; the oldest go first */
  maxEntries?: number;
  /** kept this long past their reply window so a late reply gets E_REPLY_WINDOW, not "unknown" */
  graceMs?: number;
  now?: () => number;
}

const NO_REPLY_TTL_MS = 5 * 60_000;

export class EventRegistry {
  readonly #records = new Map<string, EventRecord & { expiresAt: number; threadKey: string }>();
  readonly #threads = new Map<string, { thread: ReplyThread; users: number }>();
  readonly #maxEntries: number;
  readonly #graceMs: number;
  readonly now: () => number;

  constructor(options: EventRegistryOptions = {}) {
    this.#maxEntries = options.maxEntries ?? 50_000;
    this.#graceMs = options.graceMs ?? 10 * 60_000;
    this.now = options.now ?? Date.now;
  }

  /** Records an incoming event for one bot; returns its ref. */
  register(event: { bot: string; type: string; id: string; data: unknown; receivedAt?: number; ref?: string }): string {
    const receivedAt = event.receivedAt ?? this.now();
    this.#prune(receivedAt);
    const ref = event.ref ?? randomUUID();
    const route = replyRouteFor(event.type, event.id, event.data);
    const threadKey = isReplyRoute(route) ? `${event.bot}\u0000${route.idField}\u0000${route.sourceId}` : `\u0000${ref}`;
    let shared = this.#threads.get(threadKey);
    if (!shared) {
      shared = { thread: { seq: 0, replies: 0, acked: false }, users: 0 };
      this.#threads.set(threadKey, shared);
    }
    shared.users += 1;
    const ttl = isReplyRoute(route) ? route.windowMs + this.#graceMs : NO_REPLY_TTL_MS;
    this.#records.set(ref, {
      ref, bot: event.bot, type: event.type, id: event.id, data: event.data, receivedAt, route,
      thread: shared.thread, finished: false, expiresAt: receivedAt + ttl, threadKey,
    });
    return ref;
  }

  get(ref: string): EventRecord | undefined {
    return this.#records.get(ref);
  }

  forget(ref: string): void {
    const record = this.#records.get(ref);
    if (!record) return;
    this.#records.delete(ref);
    const shared = this.#threads.get(record.threadKey);
    if (shared && --shared.users <= 0) this.#threads.delete(record.threadKey);
  }

  get size(): number {
    return this.#records.size;
  }

  #prune(now: number): void {
    // insertion order ≈ expiry order; stop at the first live record unless over the cap
    for (const [ref, record] of this.#records) {
      if (record.expiresAt > now && this.#records.size < this.#maxEntries) break;
      this.forget(ref);
    }
  }
}
