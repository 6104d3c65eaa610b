/**
 * Dependencies point down: the import graph of runtime/ has no cycle (type-only imports included:
 * they tie modules together as much as value imports do), the SDK stands alone, the platform
 * clients know nothing of plugins, and the plugin layer knows nothing of the bot, console or
 * composition root above it. Read from the sources with a regex over import/export … from.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** `import … from '…'`, `import '…'`, `import type …`, `export … from '…'`, over several lines. */
const IMPORT = /^\s*(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/gm;

function sourcesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    if (name === 'node_modules' || name === 'dist') continue;
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) out.push(...sourcesUnder(path));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** file (relative to the repository, `/`-separated) → the repository files it imports */
function importGraph(dirs: string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of dirs.flatMap(sourcesUnder)) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    const targets = new Set<string>();
    for (const [, spec] of text.matchAll(IMPORT)) {
      if (!spec!.startsWith('.')) continue;
      const target = resolve(ROOT, dirname(file), spec!);
      if (existsSync(target) && statSync(target).isFile()) targets.add(relative(ROOT, target).split(sep).join('/'));
    }
    graph.set(file.split(sep).join('/'), [...targets]);
  }
  return graph;
}

/** One cycle as a path (first file repeated at the end), or undefined. */
function findCycle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string): string[] | undefined => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (!graph.has(next)) continue;
      if (state.get(next) === 'open') return [...stack.slice(stack.indexOf(next)), next];
      if (!state.has(next)) {
        const found = visit(next);
        if (found) return found;
      }
    }
    stack.pop();
    state.set(file, 'done');
    return undefined;
  };
  for (const file of [...graph.keys()].sort()) {
    if (state.has(file)) continue;
    const found = visit(file);
    if (found) return found;
  }
  return undefined;
}

function violations(graph: Map<string, string[]>, from: (file: string) => boolean, to: (file: string) => boolean): string[] {
  return [...graph].flatMap(([file, targets]) => (from(file) ? targets.filter(to).map((t) => `${file} → ${t}`) : []));
}

const graph = importGraph(['runtime', 'sdk-types']);
const runtimeOnly = new Map([...graph].filter(([file]) => file.startsWith('runtime/')));
const under = (dir: string) => (file: string): boolean => file.startsWith(`${dir}/`);

test('the import reader sees imports, type-only and re-exports included', () => {
  // the parser itself: a graph that lost its edges would pass every rule below
  assert.ok(runtimeOnly.size > 100, `${runtimeOnly.size} files`);
  const sandbox = graph.get('runtime/plugins/sandbox/plugin-sandbox.ts') ?? [];
  assert.ok(sandbox.includes('runtime/plugins/sandbox/prelude/boundary.ts'), 'a named import with types');
  assert.ok(sandbox.includes('runtime/plugins/sandbox/ipc.ts'), 'an `import type`');
  assert.ok((graph.get('sdk-types/index.ts') ?? []).includes('sdk-types/events.ts'), 'an `export type * from`');
  assert.deepEqual(findCycle(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]])), ['a', 'b', 'c', 'a']);
});

test('no import cycle between files of runtime/', () => {
  const cycle = findCycle(runtimeOnly);
  assert.equal(cycle, undefined, `cycle: ${cycle?.join(' → ')}`);
});

test('sdk-types/ imports nothing from runtime/', () => {
  assert.deepEqual(violations(graph, under('sdk-types'), under('runtime')), []);
});

test('runtime/openapi and runtime/gateway import nothing from runtime/plugins', () => {
  const platform = (f: string): boolean => under('runtime/openapi')(f) || under('runtime/gateway')(f);
  assert.deepEqual(violations(graph, platform, under('runtime/plugins')), []);
});

test('runtime/plugins imports nothing from runtime/bot, runtime/console or runtime/runtime*.ts', () => {
  const above = (f: string): boolean => under('runtime/bot')(f) || under('runtime/console')(f) || /^runtime\/runtime[^/]*\.ts$/.test(f);
  assert.deepEqual(violations(graph, under('runtime/plugins'), above), []);
});
