/**
 * Plugin storage: the cost of one `set` of a 60 KB value in a namespace filled to its 16 MB cap,
 * against the same `set` in an empty namespace (a store whose writes grow with the namespace shows
 * a ratio far above 1), through the runtime's own path (StorageBackends → the embedded store).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { StorageBackends } from '../runtime/bot/storage-backends.ts';
import { silentLogger } from '../runtime/logging/logger.ts';
import type { KeyValueStore } from '../runtime/plugins/storage/key-value-store.ts';
import { withRatio, type BenchRow } from './rows.ts';

const VALUE = JSON.stringify('v'.repeat(60_000));
const SETS = 273;

async function msPerSet(store: KeyValueStore, ns: { bot: string; plugin: string }): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < SETS; i++) await store.set(ns, `hot${i % 8}`, VALUE);
  return (performance.now() - start) / SETS;
}

export async function benchStorage(): Promise<BenchRow[]> {
  const dataDir = await mkdtemp(join(tmpdir(), 'qqbot-bench-storage-'));
  const backends = new StorageBackends({ dataDir, logger: silentLogger });
  try {
    const store = await backends.open({ kind: 'file' }, 'bench');
    const empty = await msPerSet(store, { bot: 'bench', plugin: 'empty' });
    const full = { bot: 'bench', plugin: 'full' };
    for (let i = 0; (await store.usage(full)).bytes + 2 * VALUE.length < 16 * 1024 * 1024; i++) await store.set(full, `fill${i}`, VALUE);
    const atCap = await msPerSet(store, full);
    return [withRatio({ name: `set of 60 KB in a 16 MB namespace, ×${SETS} (baseline: empty namespace)`, value: atCap, unit: 'ms/set', baseline: empty })];
  } finally {
    await backends.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}
