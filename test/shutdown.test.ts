import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSimulator } from '../runtime/simulator/index.ts';

const BIN = fileURLToPath(new URL('../bin/qqbot.js', import.meta.url));
const FIXTURE_PLUGINS = fileURLToPath(new URL('./fixtures/runtime/plugins', import.meta.url));

test('SIGTERM during traffic: every event already received is handled and answered before exit 0', async () => {
  // The simulator runs in this process so its outbox outlives the bot process.
  const sim = await startSimulator({ printCredentials: false });
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-shutdown-'));
  writeFileSync(join(dir, 'bot.yaml'), [
    `pluginsDir: ${FIXTURE_PLUGINS}`,
    `dataDir: ${join(dir, 'data')}`,
    'bots:',
    '  - name: demo',
    '    appId: "1020000001"',
    '    secret: simulator-secret',
    `    endpoint: ${sim.url}`,
    `    tokenEndpoint: ${sim.url}/app/getAppAccessToken`,
    '    shards: 1',
    '    plugins: { slow: {} }',
  ].join('\n'));

  const child = spawn(process.execPath, [BIN, 'start', 'bot.yaml'], { cwd: dir, env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

  try {
    const deadline = Date.now() + 60_000;
    while (!/1\/1 bots running/.test(stdout)) {
      assert.ok(Date.now() < deadline, `bot did not start:\n${stdout}\n${stderr}`);
      assert.equal(child.exitCode, null, `bot exited early:\n${stdout}\n${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    // Each handler waits 40 ms on a timer before replying, so events pile up in flight.
    // Traffic keeps flowing while the signal lands: some events are taken in, the rest stay with the platform.
    const posted = new Set<string>();
    for (let i = 0; i < 300; i++) {
      posted.add(sim.postMessage({ kind: 'c2c', content: `message ${i}` }).id);
      if (i === 150) child.kill('SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 2));
    }

    assert.equal(await exited, 0, stderr);
    const stopped = stdout.split('\n').filter((line) => line.includes('"msg":"stopped"')).map((line) => JSON.parse(line) as { received: number; handled: number; unfinished: number })[0];
    assert.ok(stopped, `no "stopped" log line:\n${stdout}`);
    const replies = sim.outbox().filter((entry) => entry.msg_id !== undefined && posted.has(entry.msg_id));
    const distinct = new Set(replies.map((entry) => entry.msg_id));
    console.log(`# shutdown: posted ${posted.size}, received ${stopped.received}, handled ${stopped.handled}, unfinished ${stopped.unfinished}, replies ${replies.length}`);
    assert.ok(stopped.received > 0);
    assert.equal(stopped.unfinished, 0);
    assert.equal(stopped.handled, stopped.received);
    assert.equal(replies.length, stopped.received, 'every received event was answered');
    assert.equal(distinct.size, replies.length, 'no event answered twice');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await sim.close();
  }
});
