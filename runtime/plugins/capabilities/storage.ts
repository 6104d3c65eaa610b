/**
 * `ctx.storage.*`: the namespace comes from the caller's grant (bot + plugin), never from the
 * payload; keys, values and the namespace's total are size-capped, values must be JSON.
 */
import type { KeyValueStore, StorageNamespace } from '../storage/key-value-store.ts';
import { CapabilityError } from './capability-error.ts';

export interface StorageCaps {
  maxKeyLength: number;
  maxValueBytes: number;
  /** per plugin per bot */
  maxKeys: number;
  /** per plugin per bot: UTF-8 bytes of all keys plus values */
  maxTotalBytes: number;
}

export const DEFAULT_STORAGE_CAPS: StorageCaps = { maxKeyLength: 256, maxValueBytes: 64 * 1024, maxKeys: 10_000, maxTotalBytes: 16 * 1024 * 1024 };

/**
 * A store that cannot be reached (Redis down) is the plugin's problem to handle, not a host bug:
 * it gets E_STORAGE_UNAVAILABLE; the store's owner reports the outage once, not per call.
 */
export async function callStorage(store: KeyValueStore, ns: StorageNamespace, op: string, payload: unknown, caps: StorageCaps): Promise<unknown> {
  try {
    return await runStorage(store, ns, op, payload, caps);
  } catch (error) {
    if (error instanceof CapabilityError || error instanceof SyntaxError) throw error;
    throw new CapabilityError('E_STORAGE_UNAVAILABLE', `storage.${op.slice(0, 32)} failed: the store is unavailable (${(error as Error).message})`);
  }
}

async function runStorage(store: KeyValueStore, ns: StorageNamespace, op: string, payload: unknown, caps: StorageCaps): Promise<unknown> {
  const p = (typeof payload === 'object' && payload !== null ? payload : {}) as { key?: unknown; value?: unknown; prefix?: unknown };
  switch (op) {
    case 'get': {
      const text = await store.get(ns, checkKey(p.key, caps));
      return text === undefined ? undefined : (JSON.parse(text) as unknown);
    }
    case 'set': {
      const key = checkKey(p.key, caps);
      if (p.value === undefined) throw new CapabilityError('E_INVALID_ARGUMENT', 'storage.set: value is undefined (use storage.delete)');
      const text = JSON.stringify(p.value);
      const bytes = Buffer.byteLength(text);
      if (bytes > caps.maxValueBytes) throw new CapabilityError('E_STORAGE_LIMIT', `storage.set: value is ${bytes} bytes, the limit is ${caps.maxValueBytes}`);
      const over = await store.set(ns, key, text, { maxKeys: caps.maxKeys, maxBytes: caps.maxTotalBytes });
      if (over?.limit === 'keys') throw new CapabilityError('E_STORAGE_LIMIT', `storage.set: the plugin already stores ${caps.maxKeys} keys, the limit`);
      if (over?.limit === 'bytes') {
        throw new CapabilityError('E_STORAGE_LIMIT', `storage.set: this write would bring the plugin's storage to ${over.wouldUse} bytes; the limit is ${caps.maxTotalBytes} (delete keys to make room)`);
      }
      return undefined;
    }
    case 'delete':
      return store.delete(ns, checkKey(p.key, caps));
    case 'keys': {
      const prefix = p.prefix ?? '';
      if (typeof prefix !== 'string' || prefix.length > caps.maxKeyLength || LONE_SURROGATE.test(prefix)) throw new CapabilityError('E_INVALID_ARGUMENT', 'storage.keys: prefix must be a short string');
      return store.keys(ns, prefix);
    }
    default:
      throw new CapabilityError('E_UNKNOWN_CAPABILITY', `storage.${op.slice(0, 32)} does not exist`);
  }
}

// with the u flag a surrogate pair is one code point: only an unpaired half matches
const LONE_SURROGATE = /\p{Cs}/u;

// NUL is refused so that stores can keep bookkeeping fields no plugin key can name; a lone surrogate
// because stores keep UTF-8, where two such keys would both become U+FFFD and collide.
function checkKey(key: unknown, caps: StorageCaps): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > caps.maxKeyLength || key.includes('\u0000') || LONE_SURROGATE.test(key)) {
    throw new CapabilityError('E_INVALID_ARGUMENT', `storage: key must be a string of 1–${caps.maxKeyLength} characters without NUL or lone surrogates`);
  }
  return key;
}
