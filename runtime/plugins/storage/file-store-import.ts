/**
 * The store before SQLite kept one JSON file per namespace, `<dir>/<bot>/<plugin>.json` (names
 * URI-encoded), replaced through `*.tmp` files that a crash could leave behind. At start-up its data
 * moves into the SQLite store (each file in one transaction, remembered so a crash mid-way never
 * imports a file twice over newer writes), the files are removed, and stray `*.tmp` files, writes
 * that never completed, are swept. A file that is not a JSON object of strings stays where it is.
 */
import { readdir, readFile, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../logging/logger.ts';
import type { SqliteKeyValueStore } from './sqlite-store.ts';

export interface FileStoreImport {
  namespaces: number;
  keys: number;
  /** `*.tmp` leftovers removed */
  swept: number;
  /** files left in place because they could not be read */
  unreadable: string[];
}

export async function importFileStore(dir: string, store: SqliteKeyValueStore, logger: Logger): Promise<FileStoreImport> {
  const result: FileStoreImport = { namespaces: 0, keys: 0, swept: 0, unreadable: [] };
  for (const botDir of await entries(dir)) {
    if (!botDir.isDirectory()) continue;
    const folder = join(dir, botDir.name);
    for (const file of await entries(folder)) {
      const path = join(folder, file.name);
      if (file.name.endsWith('.tmp')) {
        await rm(path, { force: true });
        result.swept += 1;
        continue;
      }
      if (!file.name.endsWith('.json')) continue;
      const data = parseNamespace(await readFile(path, 'utf8').catch(() => ''));
      if (!data) {
        result.unreadable.push(path);
        logger.error({ file: path }, 'storage: a file of the old file store is not a JSON object of strings; left in place, not imported');
        continue;
      }
      const ns = { bot: decodeURIComponent(botDir.name), plugin: decodeURIComponent(file.name.slice(0, -'.json'.length)) };
      if (store.importOnce(`file-store:${botDir.name}/${file.name}`, ns, data)) {
        result.namespaces += 1;
        result.keys += data.length;
      }
      await rm(path, { force: true });
    }
    await rmdir(folder).catch(() => undefined); // only when empty
  }
  await rmdir(dir).catch(() => undefined);
  return result;
}

async function entries(dir: string) {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

function parseNamespace(text: string): Array<[string, string]> | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
    const pairs = Object.entries(parsed as Record<string, unknown>);
    return pairs.every(([, value]) => typeof value === 'string') ? (pairs as Array<[string, string]>) : undefined;
  } catch {
    return undefined;
  }
}
