/**
 * The one place that reads isolated-vm's error texts (docs/sandbox.md §7). Anything that is
 * not one of these is an error thrown by plugin code and surfaced through an entry.
 */
export type IvmFailure = 'timeout' | 'memory' | 'disposed' | 'plugin';

export function classifyIvmError(err: unknown): IvmFailure {
  // A watchdog dispose during a copy rejects with null rather than an Error.
  if (err === null || err === undefined) return 'disposed';
  const text = err instanceof Error ? err.message : typeof err === 'string' ? err : '';
  if (text.includes('Script execution timed out.')) return 'timeout';
  if (text.includes('due to memory limit')) return 'memory';
  if (
    text.includes('Isolate is disposed') ||
    text.includes('Isolate was disposed during execution') ||
    text.includes('Unable to deserialize cloned data') ||
    text.includes('Promise was abandoned')
  ) {
    return 'disposed';
  }
  return 'plugin';
}
