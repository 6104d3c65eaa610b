/**
 * Edits of bot.yaml made by commands (`qqbot plugin add|remove`), through the YAML Document API so
 * the operator's comments, order and formatting stay as they were.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { isMap, isSeq, parseDocument, type Document, type YAMLMap } from 'yaml';
import { QQBotError } from '../errors.ts';

export interface PluginListChange {
  /** false: the plugin was already enabled on that bot */
  changed: boolean;
  /** the bot had no plugins list (every plugin folder ran): the folders now listed explicitly */
  materialized?: string[];
}

function load(file: string): Document {
  const doc = parseDocument(readFileSync(file, 'utf8'));
  if (doc.errors[0]) throw new QQBotError('E_CONFIG_SYNTAX', `${file}: ${doc.errors[0].message.split('\n')[0]}`, { file });
  return doc;
}

function botNode(doc: Document, file: string, bot: string): YAMLMap {
  const bots = doc.get('bots', true);
  const node = isSeq(bots) ? bots.items.find((item) => isMap(item) && item.get('name') === bot) : undefined;
  if (!isMap(node)) throw new QQBotError('E_CONFIG_BOT', `${file}: no bot named "${bot}"`, { file, bot });
  return node;
}

/**
 * Enables `plugin` on `bot` with an empty config section. A bot without a plugins list ran every
 * plugin folder; it gets a list naming those folders (`folderPlugins`) plus the new plugin, so what
 * ran before still runs.
 */
export function enablePlugin(file: string, bot: string, plugin: string, folderPlugins: readonly string[]): PluginListChange {
  const doc = load(file);
  const node = botNode(doc, file, bot);
  const existing: unknown = node.get('plugins', true);
  const result: PluginListChange = { changed: true };
  let list: YAMLMap;
  if (isMap(existing)) {
    list = existing;
    // an empty `plugins: {}` becomes a block, one plugin a line; a written-out flow map keeps its style
    if (list.items.length === 0) list.flow = false;
  } else {
    list = doc.createNode(Object.fromEntries(folderPlugins.map((name) => [name, {}])));
    node.set('plugins', list);
    result.materialized = [...folderPlugins];
  }
  if (list.has(plugin) && list.get(plugin) !== false) return { changed: false };
  const section = doc.createNode({});
  section.flow = true;
  list.set(plugin, section);
  for (const item of list.items) if (isMap(item.value) && item.value.items.length === 0) item.value.flow = true;
  writeFileSync(file, doc.toString());
  return result;
}

/** Removes `plugin` from every bot's plugins list; returns the bots it was listed on. */
export function removePlugin(file: string, plugin: string): string[] {
  const doc = load(file);
  const bots = doc.get('bots', true);
  const removed: string[] = [];
  for (const item of isSeq(bots) ? bots.items : []) {
    if (!isMap(item)) continue;
    const plugins = item.get('plugins', true);
    if (isMap(plugins) && plugins.delete(plugin)) removed.push(String(item.get('name')));
  }
  if (removed.length > 0) writeFileSync(file, doc.toString());
  return removed;
}
