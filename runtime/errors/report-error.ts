/**
 * Emits `error` only to listeners there are: these are reports of a part that keeps running, and Node
 * throws an `error` nobody listens to.
 */
export function reportError(emitter: { listenerCount(event: 'error'): number; emit(event: 'error', error: Error): boolean }, error: Error): void {
  if (emitter.listenerCount('error') > 0) emitter.emit('error', error);
}
