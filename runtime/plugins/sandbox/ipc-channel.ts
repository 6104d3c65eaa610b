/**
 * One end of the main ↔ plugin-host boundary, used by both sides. Messages sent within one tick go
 * out as a single IPC message (an array, in order): one serialisation and one write per batch
 * instead of per event and per call, which is what a burst costs most at this boundary.
 */

/** What both `ChildProcess` (main side) and `process` (host side) offer. */
export interface IpcPort {
  readonly connected: boolean;
  send?(message: unknown): boolean;
}

export class IpcChannel<Out> {
  readonly #port: IpcPort;
  #batch: Out[] = [];
  #scheduled = false;
  /** a new object for every batch: lets senders tell whether something already went in this one */
  batch: object = {};
  #closed = false;

  constructor(port: IpcPort) {
    this.#port = port;
  }

  get open(): boolean {
    return !this.#closed && this.#port.connected;
  }

  /** Queues `message` for this tick's batch; false when the other side is gone. */
  send(message: Out): boolean {
    if (!this.open) return false;
    this.#batch.push(message);
    if (!this.#scheduled) {
      this.#scheduled = true;
      // after the I/O callbacks of this turn: everything they produce joins the batch
      setImmediate(() => this.flush());
    }
    return true;
  }

  flush(): void {
    this.#scheduled = false;
    if (this.#batch.length === 0) return;
    const batch = this.#batch;
    this.#batch = [];
    this.batch = {};
    if (this.open) this.#port.send?.(batch);
  }

  close(): void {
    this.#closed = true;
    this.#batch = [];
  }
}

/** Unpacks a received batch; anything that is not one is ignored (the peer is ours, but not trusted blindly). */
export function messagesOf<In>(raw: unknown): In[] {
  return Array.isArray(raw) ? (raw as In[]) : [];
}

/** Request ids and the promises waiting for their answers. */
export class PendingRequests<Answer, Tag = undefined> {
  #next = 1;
  readonly #open = new Map<number, { resolve: (a: Answer) => void; reject: (e: Error) => void; tag: Tag }>();

  /** A new id and the promise its answer settles. */
  open(tag: Tag): { id: number; answer: Promise<Answer> } {
    const id = this.#next++;
    const answer = new Promise<Answer>((resolve, reject) => this.#open.set(id, { resolve, reject, tag }));
    return { id, answer };
  }

  settle(id: number, answer: Answer): boolean {
    const entry = this.#open.get(id);
    if (!entry) return false;
    this.#open.delete(id);
    entry.resolve(answer);
    return true;
  }

  fail(id: number, error: Error): void {
    const entry = this.#open.get(id);
    if (!entry) return;
    this.#open.delete(id);
    entry.reject(error);
  }

  failAll(error: Error): void {
    const entries = [...this.#open.values()];
    this.#open.clear();
    for (const entry of entries) entry.reject(error);
  }

  tags(): Tag[] {
    return [...this.#open.values()].map((e) => e.tag);
  }
}
