import { readFileSync } from 'node:fs';

/**
 * The runtime's package version. Its package.json is two folders up from this module in a checkout
 * (runtime/) and three when installed from npm (dist/runtime/), so it is looked up by name.
 */
export const VERSION: string = findVersion();

function findVersion(): string {
  for (let dir = new URL('./', import.meta.url); ; dir = new URL('../', dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'qqbot-runtime' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // no package.json here: keep going up
    }
    if (new URL('../', dir).href === dir.href) return '0.0.0';
  }
}
