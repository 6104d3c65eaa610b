import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { discoverPlugins } from '../runtime/plugins/discovery.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function run(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // NODE_TEST_CONTEXT would make a nested `node --test` report to this runner instead of stdout
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    execFile(process.execPath, args, { cwd, env, timeout: 120_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

test('qqbot new-plugin scaffolds a publishable plugin package whose own sandboxed test passes, that type-checks against the sandbox only, and that discovery accepts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-scaffold-'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  const created = await run([join(ROOT, 'bin/qqbot.js'), 'new-plugin', 'greeter'], dir);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stdout, /created plugins\/greeter\//);

  const manifest = JSON.parse(readFileSync(join(dir, 'plugins/greeter/package.json'), 'utf8')) as { name: string; files: string[]; devDependencies: Record<string, string>; qqbot: { events: string[] } };
  assert.ok(manifest.qqbot.events.includes('GROUP_AT_MESSAGE_CREATE'));
  // publishable: a name, what to ship, and the helper and types at this runtime's version (lockstep)
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  assert.equal(manifest.name, 'qqbot-plugin-greeter');
  assert.deepEqual(manifest.files, ['*.ts', '!*.test.ts', 'README.md']);
  assert.equal(manifest.devDependencies['qqbot-runtime'], `^${version}`);
  assert.equal(manifest.devDependencies['qqbot-sdk-types'], `^${version}`);
  assert.match(readFileSync(join(dir, 'plugins/greeter/README.md'), 'utf8'), /## Publish/);

  // type-checks against the sandbox's globals; `process` is refused as it would be at run time
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  const checked = await run([tsc, '-p', 'plugins/greeter'], dir);
  assert.equal(checked.code, 0, checked.stdout + checked.stderr);
  appendFileSync(join(dir, 'plugins/greeter/index.ts'), 'export const leak = process.env.SECRET;\n');
  const leaked = await run([tsc, '-p', 'plugins/greeter'], dir);
  assert.notEqual(leaked.code, 0);
  assert.match(leaked.stdout, /index\.ts\(\d+,\d+\): error TS\d+: Cannot find name 'process'/);
  writeFileSync(join(dir, 'plugins/greeter/index.ts'), readFileSync(join(dir, 'plugins/greeter/index.ts'), 'utf8').replace('export const leak = process.env.SECRET;\n', ''));
  const discovery = await discoverPlugins({ pluginsDir: join(dir, 'plugins') });
  assert.deepEqual(discovery.problems, []);
  assert.deepEqual(discovery.plugins.map((p) => p.name), ['greeter']);

  const tested = await run(['--test', '--test-reporter=tap', 'plugins/greeter/greeter.test.ts'], dir);
  assert.equal(tested.code, 0, `${tested.stdout}\n${tested.stderr}`);
  assert.match(tested.stdout, /# pass 2/);

  const again = await run([join(ROOT, 'bin/qqbot.js'), 'new-plugin', 'greeter'], dir);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists/);
  const bad = await run([join(ROOT, 'bin/qqbot.js'), 'new-plugin', 'Bad Name'], dir);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /expected a plugin name/);
});
