import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
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

test('qqbot new-plugin scaffolds a plugin whose own sandboxed test passes and that discovery accepts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-scaffold-'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  const created = await run([join(ROOT, 'bin/qqbot.js'), 'new-plugin', 'greeter'], dir);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stdout, /created plugins\/greeter\//);

  const manifest = JSON.parse(readFileSync(join(dir, 'plugins/greeter/package.json'), 'utf8')) as { qqbot: { events: string[] } };
  assert.ok(manifest.qqbot.events.includes('GROUP_AT_MESSAGE_CREATE'));
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
