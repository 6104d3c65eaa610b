/**
 * Events the dispatcher handed to plugins, under an unguessable `ref`. The reply router finds the
 * source event here (route, window, msg_seq); the ref is what `SandboxEvent.ref` carries.
 * Reply bookkeeping lives in a thread per (bot, id field, source id), so every plugin answering one
 * message, a duplicate delivery of it, and direct `api.send*` calls naming its id share one msg_seq
 * sequence and one reply count.
 *
 * Reply windows run from the first receipt, not from the payload's `timestamp`. The platform measures
 * from its own send time, which receipt follows, so receipt never refuses a reply the platform would
 * take; a timestamp would, whenever this host's clock runs ahead of the platform's. What receipt
 * misses (delivery delay, events replayed after a resume) the platform still refuses (304027).
 */
import { randomUUID } from 'node:crypto';
import { passiveSourceOf, replyRouteFor, type NoReplyRoute, type PassiveSource, type ReplyRoute } from './reply-route.ts';

export interface ReplyThread {
  /** last msg_seq handed out */
  seq: number;
  /** replies sent or in flight */
  replies: number;
  /** INTERACTION_CREATE: acknowledged (by a plugin or the host) */
  acked: boolean;
  /** first receipt of the source; the reply window runs from here */
  openedAt: number;
  /** instances whose reply another delivery of the event already settled (see isSettledElsewhere) */
  settledElsewhere?: Set<string>;
}

/** One reply slot taken from a thread: its msg_seq, and what a failed send does to the thread. */
export interface ReplyReservation {
  seq: number;
  /** epoch ms the passive window closes: a send still waiting then is not sent */
  deadline: number;
  /**
   * The send threw: refused by the platform or never sent, it used up none of the message's replies (the
   * seq stays burnt); refused because another delivery sent it (or died sending it), the asking plugin
   * is done with the event.
   */
  failed(error: unknown): void;
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
  /** instances that asked for a reply to this delivery (a handler cut off after it still answered) */
  repliedBy?: Set<string>;
}

/** A thread found by its source id (direct `api.send*` with `msg_id`/`event_id`). */
export interface KnownSource {
  type: string;
  source: PassiveSource;
  thread: ReplyThread;
}

export interface EventRegistryOptions {
  /** records kept at most; the oldest go first */
  maxEntries?: number;
  /** kept this long past their reply window so a late reply gets E_REPLY_WINDOW, not "unknown" */
  graceMs?: number;
  now?: () => number;
}

const NO_REPLY_TTL_MS = 5 * 60_000;

interface StoredRecord extends EventRecord {
  expiresAt: number;
  ttl: number;
  threadKey: string;
}

export class EventRegistry {
  readonly #records = new Map<string, StoredRecord>();
  // one insertion-ordered queue per TTL, so each is also in expiry order and pruning stops early
  readonly #byTtl = new Map<number, Set<string>>();
  readonly #threads = new Map<string, { thread: ReplyThread; users: number; type: string; source: PassiveSource | undefined }>();
  readonly #maxEntries: number;
  readonly #graceMs: number;
  readonly now: () => number;

  constructor(options: EventRegistryOptions = {}) {
    this.#maxEntries = options.maxEntries ?? 50_000;
    this.#graceMs = options.graceMs ?? 10 * 60_000;
    this.now = options.now ?? Date.now;
  }

  /**
   * Records an incoming event for one bot; returns its ref. `replied`: how far the replies of earlier
   * deliveries of it (in another process) got; its thread goes on from there, so a plugin answering on a
   * redelivery takes the next msg_seq, not one already sent.
   */
  register(event: { bot: string; type: string; id: string; data: unknown; receivedAt?: number; ref?: string; replied?: { seq: number; replies: number; acked?: boolean } }): string {
    const receivedAt = event.receivedAt ?? this.now();
    const ref = event.ref ?? randomUUID();
    this.forget(ref);
    this.#prune(receivedAt);
    const route = replyRouteFor(event.type, event.id, event.data);
    const source = passiveSourceOf(route);
    const threadKey = source ? threadKeyOf(event.bot, source.idField, source.sourceId) : `\u0000${ref}`;
    let shared = this.#threads.get(threadKey);
    if (!shared) {
      shared = { thread: { seq: 0, replies: 0, acked: false, openedAt: receivedAt }, users: 0, type: event.type, source };
      this.#threads.set(threadKey, shared);
    }
    shared.thread.openedAt = Math.min(shared.thread.openedAt, receivedAt);
    if (event.replied) {
      shared.thread.seq = Math.max(shared.thread.seq, event.replied.seq);
      shared.thread.replies = Math.max(shared.thread.replies, event.replied.replies);
      // an interaction acknowledged on an earlier delivery is not acknowledged again
      if (event.replied.acked) shared.thread.acked = true;
    }
    shared.users += 1;
    const ttl = source ? source.windowMs + this.#graceMs : NO_REPLY_TTL_MS;
    this.#records.set(ref, {
      ref, bot: event.bot, type: event.type, id: event.id, data: event.data, receivedAt, route,
      thread: shared.thread, finished: false, expiresAt: receivedAt + ttl, ttl, threadKey,
    });
    let queue = this.#byTtl.get(ttl);
    if (!queue) this.#byTtl.set(ttl, (queue = new Set()));
    queue.add(ref);
    return ref;
  }

  get(ref: string): EventRecord | undefined {
    return this.#records.get(ref);
  }

  /** The reply thread of a live source id on one bot, or undefined when no such event is known. */
  findSource(bot: string, idField: 'msg_id' | 'event_id', sourceId: string): KnownSource | undefined {
    const shared = this.#threads.get(threadKeyOf(bot, idField, sourceId));
    return shared?.source ? { type: shared.type, source: shared.source, thread: shared.thread } : undefined;
  }

  forget(ref: string): void {
    const record = this.#records.get(ref);
    if (!record) return;
    this.#records.delete(ref);
    this.#byTtl.get(record.ttl)?.delete(ref);
    const shared = this.#threads.get(record.threadKey);
    if (shared && --shared.users <= 0) this.#threads.delete(record.threadKey);
  }

  get size(): number {
    return this.#records.size;
  }

  #prune(now: number): void {
    for (const queue of this.#byTtl.values()) {
      for (const ref of queue) {
        if (this.#records.get(ref)!.expiresAt > now) break;
        this.forget(ref);
      }
    }
    // still over the cap: the oldest go, live or not
    for (const ref of this.#records.keys()) {
      if (this.#records.size < this.#maxEntries) break;
      this.forget(ref);
    }
  }
}

function threadKeyOf(bot: string, idField: string, sourceId: string): string {
  return `${bot}\u0000${idField}\u0000${sourceId}`;
}
