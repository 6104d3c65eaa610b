/**
 * What the operator granted each plugin installed from npm: a plugin from npm is third-party code, so
 * its manifest is a request, not a grant. Grants live in `plugin-grants.yaml` next to bot.yaml (one
 * line per permission and host: reviewable in a diff, like a lockfile), written by
 * `qqbot plugin add|approve`. A plugin asking for more than it was granted runs on what it was
 * granted; the rest is pending until `qqbot plugin approve NAME`. Folder plugins are the operator's
 * own code and get what they ask for.
 */
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { PluginManifest } from 'qqbot-sdk-types';
import { QQBotError } from '../errors.ts';

export const GRANTS_FILE = 'plugin-grants.yaml';

export interface PluginGrant {
  /** the version that was reviewed (informational: grants are per plugin, not per version) */
  version: string;
  permissions: string[];
  fetchHosts: string[];
}

export type GrantTable = Record<string, PluginGrant>;

/** A plugin's request against its grant; for a folder plugin the two are the same. */
export interface GrantReview {
  plugin: string;
  source: 'folder' | 'npm';
  /** what it may use now */
  effective: { permissions: string[]; fetchHosts: string[] };
  /** asked for, not granted */
  pending: { permissions: string[]; fetchHosts: string[] };
  /** granted, no longer asked for */
  dropped: { permissions: string[]; fetchHosts: string[] };
  /** the operator has never reviewed this plugin */
  unreviewed: boolean;
}

export class GrantsFileError extends QQBotError {}

export function grantsFile(configDir: string): string {
  return join(configDir, GRANTS_FILE);
}

export function approveCommand(plugin: string): string {
  return `qqbot plugin approve ${plugin}`;
}

/** Reads the grants file; a missing file grants nothing. Errors name file:line:col. */
export function readGrants(file: string): GrantTable {
  if (!existsSync(file)) return {};
  const shown = relative(process.cwd(), file) || file;
  const lines = new LineCounter();
  const doc = parseDocument(readFileSync(file, 'utf8'), { lineCounter: lines, uniqueKeys: true });
  const fail = (offset: number | undefined, message: string): never => {
    const pos = lines.linePos(offset ?? 0);
    throw new GrantsFileError('E_GRANTS_FILE', `${shown}:${pos.line}:${pos.col}: ${message}`, { file: shown, line: pos.line, col: pos.col });
  };
  const syntax = doc.errors[0];
  if (syntax) fail(syntax.pos[0], syntax.message.split('\n')[0] ?? syntax.message);
  if (doc.contents === null) return {};
  if (!isMap(doc.contents)) fail(doc.contents.range?.[0], 'expected a map of plugin name → { version, permissions, fetchHosts }');
  const table: GrantTable = {};
  const offset = (path: string[]) => (doc.getIn(path, true) as Node | undefined)?.range?.[0];
  for (const [name, value] of Object.entries(doc.toJS() as Record<string, unknown>)) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(offset([name]), `${name}: expected { version, permissions, fetchHosts }`);
    const grant = value as Record<string, unknown>;
    const list = (key: string): string[] => {
      const v = grant[key] ?? [];
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) fail(offset([name, key]) ?? offset([name]), `${name}.${key}: expected a list of strings`);
      return v as string[];
    };
    table[name] = { version: String(grant.version ?? ''), permissions: list('permissions'), fetchHosts: list('fetchHosts') };
  }
  return table;
}

const HEADER = [
  ' Permissions granted to plugins installed from npm, written by `qqbot plugin add` and',
  ' `qqbot plugin approve NAME`. Review changes to this file like code: a plugin whose manifest asks',
  ' for more than is listed here runs without it until approved. Folder plugins are not listed.',
];

/** Writes one plugin's grant (or removes it with `undefined`), keeping the file's other entries and comments. */
export async function writeGrant(file: string, plugin: string, grant: PluginGrant | undefined): Promise<void> {
  const doc: Document = parseDocument(existsSync(file) ? readFileSync(file, 'utf8') : `#${HEADER.join('\n#')}\n\n{}\n`);
  if (!isMap(doc.contents)) doc.contents = doc.createNode({});
  if (grant === undefined) {
    doc.deleteIn([plugin]);
  } else {
    const entry = doc.createNode({ version: grant.version, permissions: [...grant.permissions].sort(), fetchHosts: [...grant.fetchHosts].sort() });
    // block style, one item a line (a grant shows up in a diff as the line that added it); `[]` when empty
    for (const pair of entry.items) if (isSeq(pair.value)) pair.value.flow = pair.value.items.length === 0;
    doc.setIn([plugin], entry);
  }
  if (isMap(doc.contents)) doc.contents.flow = doc.contents.items.length === 0;
  await writeFile(file, doc.toString({ lineWidth: 0 }));
}

/** The grant that approves everything the manifest asks for. */
export function grantFor(version: string, manifest: PluginManifest): PluginGrant {
  return { version, permissions: [...(manifest.permissions ?? [])].sort(), fetchHosts: [...(manifest.fetchHosts ?? [])].sort() };
}

export function reviewGrant(plugin: { name: string; source: 'folder' | 'npm'; manifest: PluginManifest }, table: GrantTable): GrantReview {
  const permissions = plugin.manifest.permissions ?? [];
  const fetchHosts = plugin.manifest.fetchHosts ?? [];
  const none = { permissions: [], fetchHosts: [] };
  if (plugin.source === 'folder') return { plugin: plugin.name, source: 'folder', effective: { permissions, fetchHosts }, pending: none, dropped: none, unreviewed: false };
  const granted = table[plugin.name];
  const has = { permissions: new Set(granted?.permissions ?? []), fetchHosts: new Set(granted?.fetchHosts ?? []) };
  return {
    plugin: plugin.name,
    source: 'npm',
    effective: { permissions: permissions.filter((p) => has.permissions.has(p)), fetchHosts: fetchHosts.filter((h) => has.fetchHosts.has(h)) },
    pending: { permissions: permissions.filter((p) => !has.permissions.has(p)), fetchHosts: fetchHosts.filter((h) => !has.fetchHosts.has(h)) },
    dropped: {
      permissions: [...has.permissions].filter((p) => !(permissions as string[]).includes(p)),
      fetchHosts: [...has.fetchHosts].filter((h) => !fetchHosts.includes(h)),
    },
    unreviewed: granted === undefined,
  };
}

export function hasPending(review: GrantReview): boolean {
  return review.pending.permissions.length > 0 || review.pending.fetchHosts.length > 0;
}

/** ["members.manage", "net.fetch", "fetch host api.example.com"] */
export function grantItems(grant: { permissions: readonly string[]; fetchHosts: readonly string[] }): string[] {
  return [...grant.permissions, ...grant.fetchHosts.map((h) => `fetch host ${h}`)];
}

/** "members.manage, fetch host api.example.com" */
export function describePending(review: GrantReview): string {
  return grantItems(review.pending).join(', ');
}
