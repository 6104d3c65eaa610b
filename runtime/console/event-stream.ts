import type { ServerResponse } from 'node:http';

/** A client that stops reading is dropped once this much is queued for it. */
const MAX_BUFFERED_BYTES = 1 << 20;

/**
 * The fan-out behind `GET /api/stream` (Server-Sent Events). One writer for all clients: each
 * frame is serialised once, whatever the number of open pages.
 */
export class EventStream {
  readonly #clients = new Set<ServerResponse>();
  readonly #onEmpty: () => void;
  readonly #onFirst: () => void;

  /** `onFirst`/`onEmpty` let the owner run periodic work only while someone is watching. */
  constructor(hooks: { onFirst: () => void; onEmpty: () => void }) {
    this.#onFirst = hooks.onFirst;
    this.#onEmpty = hooks.onEmpty;
  }

  get size(): number {
    return this.#clients.size;
  }

  /** Takes over `res`; `initial` frames go to this client only (state, recent log). */
  add(res: ServerResponse, initial: string[]): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n' + initial.join(''));
    this.#clients.add(res);
    res.on('close', () => this.#remove(res));
    if (this.#clients.size === 1) this.#onFirst();
  }

  broadcast(frame: string): void {
    for (const res of this.#clients) {
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        res.destroy();
        continue;
      }
      res.write(frame);
    }
  }

  closeAll(): void {
    for (const res of this.#clients) res.end();
    this.#clients.clear();
  }

  #remove(res: ServerResponse): void {
    if (this.#clients.delete(res) && this.#clients.size === 0) this.#onEmpty();
  }
}

/** One SSE frame. JSON never contains a raw newline, so one `data:` line is enough. */
export function sseFrame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
