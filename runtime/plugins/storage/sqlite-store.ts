/**
 * The embedded default: one SQLite database (Node's built-in `node:sqlite`) for every bot and
 * plugin. Each write is one transaction that touches one row and the namespace's counters, so a
 * `set` costs the same whatever the namespace holds, and a crash at any instant leaves every key
 * with its old or its new value. WAL with `synchronous = NORMAL`: a committed write survives the
 * process being killed; an OS crash or power cut may lose the last writes, never tear one.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { entryBytes, type KeyValueStore, type QuotaExceeded, type StorageNamespace, type StorageQuota, type StorageUsage } from './key-value-store.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS entries (
  bot TEXT NOT NULL, plugin TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (bot, plugin, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS namespaces (
  bot TEXT NOT NULL, plugin TEXT NOT NULL, keys INTEGER NOT NULL, bytes INTEGER NOT NULL,
  PRIMARY KEY (bot, plugin)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS imports (source TEXT PRIMARY KEY) WITHOUT ROWID;
`;

export class SqliteKeyValueStore implements KeyValueStore {
  readonly file: string;
  readonly #db: DatabaseSync;
  readonly #get: StatementSync;
  readonly #usage: StatementSync;
  readonly #put: StatementSync;
  readonly #remove: StatementSync;
  readonly #count: StatementSync;
  readonly #keys: StatementSync;
  readonly #imported: StatementSync;
  readonly #markImported: StatementSync;
  #closed = false;

  /** Opens (or creates) the database at `file`; SQLite replays what a crash left in its WAL. */
  constructor(options: { file: string }) {
    this.file = options.file;
    mkdirSync(dirname(options.file), { recursive: true });
    this.#db = new DatabaseSync(options.file);
    // another process on the same data folder waits this long for a write lock before failing the call
    this.#db.exec('PRAGMA busy_timeout = 2000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
    this.#db.exec(SCHEMA);
    this.#get = this.#db.prepare('SELECT value FROM entries WHERE bot = ? AND plugin = ? AND key = ?');
    this.#usage = this.#db.prepare('SELECT keys, bytes FROM namespaces WHERE bot = ? AND plugin = ?');
    this.#put = this.#db.prepare('INSERT INTO entries (bot, plugin, key, value) VALUES (?, ?, ?, ?) ON CONFLICT (bot, plugin, key) DO UPDATE SET value = excluded.value');
    this.#remove = this.#db.prepare('DELETE FROM entries WHERE bot = ? AND plugin = ? AND key = ?');
    this.#count = this.#db.prepare(
      'INSERT INTO namespaces (bot, plugin, keys, bytes) VALUES (?, ?, ?, ?) ON CONFLICT (bot, plugin) DO UPDATE SET keys = keys + excluded.keys, bytes = bytes + excluded.bytes',
    );
    // instr, not LIKE or a range: no escaping, and the same answer as String#startsWith
    this.#keys = this.#db.prepare('SELECT key FROM entries WHERE bot = ? AND plugin = ? AND instr(key, ?) = 1');
    this.#imported = this.#db.prepare('SELECT 1 AS done FROM imports WHERE source = ?');
    this.#markImported = this.#db.prepare('INSERT OR IGNORE INTO imports (source) VALUES (?)');
  }

  async get(ns: StorageNamespace, key: string): Promise<string | undefined> {
    return (this.#get.get(ns.bot, ns.plugin, key) as { value: string } | undefined)?.value;
  }

  async set(ns: StorageNamespace, key: string, value: string, quota?: StorageQuota): Promise<QuotaExceeded | undefined> {
    // IMMEDIATE: the quota check and the write hold the write lock together, even across processes
    return this.#transaction(() => {
      const old = (this.#get.get(ns.bot, ns.plugin, key) as { value: string } | undefined)?.value;
      const delta = entryBytes(key, value) - (old === undefined ? 0 : entryBytes(key, old));
      if (quota) {
        const used = this.#used(ns);
        if (old === undefined && used.keys >= quota.maxKeys) return { limit: 'keys', wouldUse: used.keys + 1 };
        if (delta > 0 && used.bytes + delta > quota.maxBytes) return { limit: 'bytes', wouldUse: used.bytes + delta };
      }
      this.#put.run(ns.bot, ns.plugin, key, value);
      this.#count.run(ns.bot, ns.plugin, old === undefined ? 1 : 0, delta);
      return undefined;
    });
  }

  async delete(ns: StorageNamespace, key: string): Promise<boolean> {
    return this.#transaction(() => {
      const old = (this.#get.get(ns.bot, ns.plugin, key) as { value: string } | undefined)?.value;
      if (old === undefined) return false;
      this.#remove.run(ns.bot, ns.plugin, key);
      this.#count.run(ns.bot, ns.plugin, -1, -entryBytes(key, old));
      return true;
    });
  }

  async keys(ns: StorageNamespace, prefix = ''): Promise<string[]> {
    return (this.#keys.all(ns.bot, ns.plugin, prefix) as Array<{ key: string }>).map((row) => row.key).sort();
  }

  async usage(ns: StorageNamespace): Promise<StorageUsage> {
    return this.#used(ns);
  }

  /**
   * Writes a whole namespace that came from elsewhere (an older store), once per `source`: the
   * entries, their counters and the mark that they were imported commit together.
   * @returns false when `source` was imported before (nothing written)
   */
  importOnce(source: string, ns: StorageNamespace, entries: Iterable<[string, string]>): boolean {
    return this.#transaction(() => {
      if (this.#imported.get(source)) return false;
      for (const [key, value] of entries) {
        const old = (this.#get.get(ns.bot, ns.plugin, key) as { value: string } | undefined)?.value;
        this.#put.run(ns.bot, ns.plugin, key, value);
        this.#count.run(ns.bot, ns.plugin, old === undefined ? 1 : 0, entryBytes(key, value) - (old === undefined ? 0 : entryBytes(key, old)));
      }
      this.#markImported.run(source);
      return true;
    });
  }

  /** Closing checkpoints the WAL into the database file; SQLite then removes the -wal and -shm files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  #used(ns: StorageNamespace): StorageUsage {
    const row = this.#usage.get(ns.bot, ns.plugin) as { keys: number; bytes: number } | undefined;
    return { keys: Number(row?.keys ?? 0), bytes: Number(row?.bytes ?? 0) };
  }

  #transaction<T>(work: () => T): T {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const result = work();
      this.#db.exec('COMMIT');
      return result;
    } catch (error) {
      // a BEGIN that found the database busy left nothing to roll back
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      throw error;
    }
  }
}
