/**
 * Where `ctx.storage` keeps data. A namespace is one plugin on one bot; the capability layer picks
 * it from the caller's grant, so a plugin can never name another's. Values are JSON text.
 */
export interface StorageNamespace {
  bot: string;
  plugin: string;
}

/** Per-namespace bounds a write must stay within. Bytes are the UTF-8 length of keys plus values. */
export interface StorageQuota {
  maxKeys: number;
  maxBytes: number;
}

export interface StorageUsage {
  keys: number;
  bytes: number;
}

/** A write the quota refused: which bound, and the usage the write would have reached. */
export interface QuotaExceeded {
  limit: 'keys' | 'bytes';
  wouldUse: number;
}

export interface KeyValueStore {
  get(ns: StorageNamespace, key: string): Promise<string | undefined>;
  /**
   * Stores `value`. With a quota, the check and the write are one step, so concurrent writers
   * cannot overshoot it; a refused write changes nothing and returns what it would have exceeded.
   * Writes that do not grow the namespace (overwrites with smaller values) always pass.
   */
  set(ns: StorageNamespace, key: string, value: string, quota?: StorageQuota): Promise<QuotaExceeded | undefined>;
  delete(ns: StorageNamespace, key: string): Promise<boolean>;
  keys(ns: StorageNamespace, prefix?: string): Promise<string[]>;
  usage(ns: StorageNamespace): Promise<StorageUsage>;
  close(): Promise<void>;
}

/** What one entry counts against `StorageQuota.maxBytes`. */
export function entryBytes(key: string, value: string): number {
  return Buffer.byteLength(key) + Buffer.byteLength(value);
}
