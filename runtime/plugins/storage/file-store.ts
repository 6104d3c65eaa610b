/**
 * The embedded default: one JSON file per namespace under a data folder, held in memory, written
 * atomically (temp file + rename) so a crash leaves the old or the new file, never half of one.
 */
import { mkdir, readFile, rename, writeFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { entryBytes, type KeyValueStore, type QuotaExceeded, type StorageNamespace, type StorageQuota, type StorageUsage } from './key-value-store.ts';

interface NamespaceState {
  data: Map<string, string>;
  /** sum of entryBytes over `data` */
  bytes: number;
  /** the last write started or queued */
  last: Promise<void>;
  /** a queued write that has not started: later changes ride along */
  next: Promise<void> | undefined;
}

export class FileKeyValueStore implements KeyValueStore {
  readonly #dir: string;
  readonly #namespaces = new Map<string, Promise<NamespaceState>>();

  /** `dir`: e.g. `<dataDir>/storage`; files are `<dir>/<bot>/<plugin>.json` (names URI-encoded). */
  constructor(options: { dir: string }) {
    this.#dir = options.dir;
  }

  fileOf(ns: StorageNamespace): string {
    return join(this.#dir, encodeURIComponent(ns.bot), `${encodeURIComponent(ns.plugin)}.json`);
  }

  async get(ns: StorageNamespace, key: string): Promise<string | undefined> {
    return (await this.#state(ns)).data.get(key);
  }

  async set(ns: StorageNamespace, key: string, value: string, quota?: StorageQuota): Promise<QuotaExceeded | undefined> {
    const state = await this.#state(ns);
    // from here to data.set nothing awaits: check and write are one step for concurrent callers
    const old = state.data.get(key);
    const delta = entryBytes(key, value) - (old === undefined ? 0 : entryBytes(key, old));
    if (quota) {
      if (old === undefined && state.data.size >= quota.maxKeys) return { limit: 'keys', wouldUse: state.data.size + 1 };
      if (delta > 0 && state.bytes + delta > quota.maxBytes) return { limit: 'bytes', wouldUse: state.bytes + delta };
    }
    state.data.set(key, value);
    state.bytes += delta;
    await this.#persist(ns, state);
    return undefined;
  }

  async delete(ns: StorageNamespace, key: string): Promise<boolean> {
    const state = await this.#state(ns);
    const old = state.data.get(key);
    if (old === undefined) return false;
    state.data.delete(key);
    state.bytes -= entryBytes(key, old);
    await this.#persist(ns, state);
    return true;
  }

  async keys(ns: StorageNamespace, prefix = ''): Promise<string[]> {
    return [...(await this.#state(ns)).data.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async usage(ns: StorageNamespace): Promise<StorageUsage> {
    const state = await this.#state(ns);
    return { keys: state.data.size, bytes: state.bytes };
  }

  async close(): Promise<void> {
    const states = await Promise.all(this.#namespaces.values());
    await Promise.all(states.map((s) => s.last.catch(() => undefined)));
  }

  #state(ns: StorageNamespace): Promise<NamespaceState> {
    const file = this.fileOf(ns);
    let state = this.#namespaces.get(file);
    if (!state) {
      state = readFile(file, 'utf8').then(
        (text) => new Map(Object.entries(JSON.parse(text) as Record<string, string>)),
        (error: NodeJS.ErrnoException) => {
          if (error.code === 'ENOENT') return new Map<string, string>();
          throw error;
        },
      ).then((data) => {
        let bytes = 0;
        for (const [k, v] of data) bytes += entryBytes(k, v);
        return { data, bytes, last: Promise.resolve(), next: undefined };
      });
      this.#namespaces.set(file, state);
      state.catch(() => this.#namespaces.delete(file));
    }
    return state;
  }

  #persist(ns: StorageNamespace, state: NamespaceState): Promise<void> {
    if (state.next) return state.next;
    const file = this.fileOf(ns);
    const run = async (): Promise<void> => {
      state.next = undefined;
      await writeAtomic(file, JSON.stringify(Object.fromEntries(state.data)));
    };
    state.next = state.last.then(run, run);
    state.last = state.next;
    return state.next;
  }
}

async function writeAtomic(file: string, text: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, text);
    await rename(tmp, file);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}
