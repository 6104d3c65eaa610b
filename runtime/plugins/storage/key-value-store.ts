/**
 * Where `ctx.storage` keeps data. A namespace is one plugin on one bot; the capability layer picks
 * it from the caller's grant, so a plugin can never name another's. Values are JSON text.
 */
export interface StorageNamespace {
  bot: string;
  plugin: string;
}

export interface KeyValueStore {
  get(ns: StorageNamespace, key: string): Promise<string | undefined>;
  set(ns: StorageNamespace, key: string, value: string): Promise<void>;
  delete(ns: StorageNamespace, key: string): Promise<boolean>;
  keys(ns: StorageNamespace, prefix?: string): Promise<string[]>;
  /** number of keys in the namespace (for the per-plugin cap) */
  count(ns: StorageNamespace): Promise<number>;
  close(): Promise<void>;
}
