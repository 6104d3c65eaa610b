/**
 * Installs packed tarballs (and what they depend on) into a folder with no registry access.
 * `npm install --offline` resolves version ranges from cached registry metadata, which `npm ci` never
 * fetches, so a fresh machine's cache has the dependencies' tarballs but not their metadata. The
 * folder therefore gets a lockfile: the tarballs by path and integrity, and their dependencies
 * pinned as in this repository's own lockfile, so npm takes every package from the cache by digest.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url);

interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  dev?: boolean;
  link?: boolean;
  [key: string]: unknown;
}

/** npm offline and quiet, on the machine's cache; not reporting to an enclosing `node --test`. */
export function npmEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  return { ...env, npm_config_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false', ...extra };
}

export async function npm(args: string[], cwd: string, env: NodeJS.ProcessEnv = npmEnv()): Promise<{ stdout: string; stderr: string }> {
  return run('npm', args, { cwd, env, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
}

/** The files of an npm tarball (a gzipped tar), by path inside the package, as text. */
export function tarballFiles(tgz: string): Map<string, string> {
  const tar = gunzipSync(readFileSync(tgz));
  const files = new Map<string, string>();
  for (let offset = 0; offset + 512 <= tar.length;) {
    const name = tar.subarray(offset, offset + 100).toString('utf8').replace(/\0.*$/s, '');
    if (name === '') break;
    const size = parseInt(tar.subarray(offset + 124, offset + 136).toString('utf8').replace(/\0.*$/s, '').trim() || '0', 8);
    files.set(name.replace(/^package\//, ''), tar.subarray(offset + 512, offset + 512 + size).toString('utf8'));
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

export function tarballManifest(tgz: string): { name: string; version: string; dependencies?: Record<string, string>; [k: string]: unknown } {
  const text = tarballFiles(tgz).get('package.json');
  if (text === undefined) throw new Error(`${tgz}: no package/package.json`);
  return JSON.parse(text);
}

/**
 * Writes `dir/package.json` (merged with `pkg`) listing the tarballs under `field`, and a lockfile
 * for them, then runs `npm install --offline`.
 */
export async function installTarballs(dir: string, tarballs: string[], options: { field?: 'dependencies' | 'devDependencies'; pkg?: Record<string, unknown> } = {}): Promise<void> {
  const field = options.field ?? 'dependencies';
  const dev = field === 'devDependencies';
  const repoLock = JSON.parse(readFileSync(new URL('package-lock.json', ROOT), 'utf8')) as { packages: Record<string, LockEntry> };
  const pkg: Record<string, unknown> = { private: true, type: 'module', ...options.pkg };
  const specs: Record<string, string> = { ...(pkg[field] as Record<string, string> | undefined) };
  const packages: Record<string, LockEntry> = {};
  for (const tgz of tarballs) {
    const manifest = tarballManifest(tgz);
    const spec = `file:${relative(dir, tgz)}`;
    specs[manifest.name] = spec;
    const integrity = `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`;
    packages[`node_modules/${manifest.name}`] = {
      version: manifest.version,
      resolved: spec,
      integrity,
      ...(manifest.dependencies ? { dependencies: manifest.dependencies } : {}),
      ...(manifest.bin ? { bin: manifest.bin } : {}),
      ...(dev ? { dev: true } : {}),
    };
  }
  // Their dependencies: the runtime's production tree, placed as the repository's lockfile has it.
  for (const [path, entry] of Object.entries(repoLock.packages)) {
    if (!path.startsWith('node_modules/') || entry.dev || entry.link || packages[path]) continue;
    const { devOptional: _devOptional, peer: _peer, ...kept } = entry;
    packages[path] = { ...kept, ...(dev ? { dev: true } : {}) };
  }
  pkg[field] = specs;
  await writeFile(join(dir, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  const root = { name: pkg.name ?? 'offline-project', version: pkg.version ?? '0.0.0', [field]: specs };
  const lock = { name: root.name, version: root.version, lockfileVersion: 3, requires: true, packages: { '': root, ...packages } };
  await writeFile(join(dir, 'package-lock.json'), `${JSON.stringify(lock, null, 2)}\n`);
  await npm(['install', '--offline', '--no-audit', '--no-fund'], dir);
}
