import { EventEmitter } from 'node:events';

/** Event name → listener argument tuple. */
export type EventMapLike = { [event: string]: unknown[] };

/**
 * An EventEmitter whose `on`/`once`/`off`/`emit` are checked against an event map. `error` is only
 * emitted when someone listens, so a connection problem can never become an uncaught exception.
 */
export class TypedEmitter<M extends EventMapLike> extends EventEmitter {
  override on<K extends keyof M & string>(event: K, listener: (...args: M[K]) => void): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }

  override once<K extends keyof M & string>(event: K, listener: (...args: M[K]) => void): this {
    return super.once(event, listener as (...args: unknown[]) => void);
  }

  override off<K extends keyof M & string>(event: K, listener: (...args: M[K]) => void): this {
    return super.off(event, listener as (...args: unknown[]) => void);
  }

  override emit<K extends keyof M & string>(event: K, ...args: M[K]): boolean {
    if (event === 'error' && this.listenerCount('error') === 0) return false;
    return super.emit(event, ...args);
  }
}
