/**
 * The backlog of one plugin instance, kept in the main process: events wait here, bounded in
 * bytes, until the plugin host has room for them (a small window per instance) — also while the
 * host or the instance restarts, so a crash or a burst delays events instead of losing them.
 */
import type { DispatchOutcome } from '../instance.ts';

/** An event's JSON, made once and shared by every instance it goes to. */
export interface SharedEvent {
  /** unique within the supervisor */
  eid: number;
  type: string;
  json: string;
  /** UTF-8 size of `json` */
  bytes: number;
  /** the channel batch that already carries this event's JSON */
  sentIn?: object;
}

export interface Queued {
  event: SharedEvent;
  resolve: (outcome: DispatchOutcome) => void;
  /** arrival order, set by the queue: a requeued event goes back to its place */
  order?: number;
}

export class InstanceQueue {
  readonly #items: Queued[] = [];
  #head = 0;
  #bytes = 0;
  #arrivals = 0;
  limitBytes: number;

  constructor(limitBytes: number) {
    this.limitBytes = limitBytes;
  }

  get length(): number {
    return this.#items.length - this.#head;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** false (and nothing queued) when the event would take the backlog past its bound */
  push(item: Queued): boolean {
    if (this.#bytes + item.event.bytes > this.limitBytes && this.length > 0) return false;
    item.order = this.#arrivals++;
    this.#items.push(item);
    this.#bytes += item.event.bytes;
    return true;
  }

  /** Puts an event that was taken out back in its place (ahead of everything that came after it). */
  requeue(item: Queued): void {
    let at = this.#head;
    while (at < this.#items.length && this.#items[at]!.order! < item.order!) at++;
    if (at === this.#head && this.#head > 0) this.#items[--this.#head] = item;
    else this.#items.splice(at, 0, item);
    this.#bytes += item.event.bytes;
  }

  shift(): Queued | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head]!;
    this.#items[this.#head] = undefined as unknown as Queued;
    this.#head++;
    this.#bytes -= item.event.bytes;
    // compact now and then: shift() on a long array is O(n) per call
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items.splice(0, this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Empties the backlog, answering each event with `outcome`. */
  drain(outcome: (item: Queued) => DispatchOutcome): void {
    for (let item = this.shift(); item; item = this.shift()) item.resolve(outcome(item));
  }
}
