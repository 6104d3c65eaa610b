import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { startSimulator } from '../runtime/simulator/index.ts';

const BIN = fileURLToPath(new URL('../bin/qqbot.js', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

function startBot(cwd: string, env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [BIN, 'start', 'bot.yaml'], { cwd, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (chunk: Buffer) => (output.stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output.stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const running = async () => {
    const deadline = Date.now() + 60_000;
    while (!/\d+\/\d+ bots running/.test(output.stdout)) {
      assert.ok(Date.now() < deadline, `bot did not start:\n${output.stdout}\n${output.stderr}`);
      assert.equal(child.exitCode, null, `bot exited early:\n${output.stdout}\n${output.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { child, output, exited, running };
}

test('npm start with the default bot.yaml: console URL printed, the echo plugin answers through the simulator', async () => {
  const bot = startBot(ROOT, { QQBOT_CONSOLE_PORT: '0', QQBOT_METRICS_PORT: '0' });
  try {
    await bot.running();
    assert.match(bot.output.stdout, /1\/1 bots running/);
    assert.match(bot.output.stdout, /console: http:\/\/127\.0\.0\.1:\d+\//);
    const simulator = /simulator: (http:\/\/127\.0\.0\.1:\d+)/.exec(bot.output.stdout)?.[1];
    assert.ok(simulator, bot.output.stdout);
    const posted = (await (await fetch(`${simulator}/_simulator/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'group_at', content: 'hello, bot' }),
    })).json()) as { id: string };
    const deadline = Date.now() + 20_000;
    for (;;) {
      const outbox = (await (await fetch(`${simulator}/_simulator/outbox`)).json()) as Array<{ msg_id?: string; body: { content?: string } }>;
      if (outbox.some((e) => e.msg_id === posted.id && e.body.content === 'echo: hello, bot')) break;
      assert.ok(Date.now() < deadline, `no echo reply in ${JSON.stringify(outbox)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    bot.child.kill('SIGTERM');
    assert.equal(await bot.exited, 0, bot.output.stderr);
    assert.ok(!bot.output.stdout.includes('simulator-secret'), 'the secret never reaches the log');
  } finally {
    if (bot.child.exitCode === null) bot.child.kill('SIGKILL');
  }
});
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

  const { child, output, exited, running } = startBot(dir);
  try {
    await running();

    // Traffic keeps flowing while the signal lands: some events are taken in, the rest stay with the platform.
    const posted = new Set<string>();
    for (let i = 0; i < 300; i++) {
      posted.add(sim.postMessage({ kind: 'c2c', content: `message ${i}` }).id);
      if (i === 150) child.kill('SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 2));
    }

    assert.equal(await exited, 0, output.stderr);
    const stopped = output.stdout.split('\n').filter((line) => line.includes('"msg":"stopped"')).map((line) => JSON.parse(line) as { received: number; handled: number; unfinished: number })[0];
    assert.ok(stopped, `no "stopped" log line:\n${output.stdout}`);
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

test('SIGTERM while a bot is still connecting (its gateway never says Hello) exits 0 promptly', async () => {
  // A platform whose token endpoint and /gateway/bot answer, but whose gateway accepts and stays silent.
  const sockets = new Set<Socket>();
  const silent = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const gatewayPort = (silent.address() as { port: number }).port;
  const api = createHttpServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/app/getAppAccessToken') return res.end(JSON.stringify({ access_token: 'tok', expires_in: '7200' }));
    if (req.url === '/gateway/bot') {
      return res.end(JSON.stringify({ url: `ws://127.0.0.1:${gatewayPort}/websocket`, shards: 1, session_start_limit: { total: 1000, remaining: 1000, reset_after: 0, max_concurrency: 1 } }));
    }
    res.statusCode = 404;
    res.end('{}');
  });
  await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
  const apiUrl = `http://127.0.0.1:${(api.address() as { port: number }).port}`;

  const dir = mkdtempSync(join(tmpdir(), 'qqbot-stuck-'));
  writeFileSync(join(dir, 'bot.yaml'), [
    `pluginsDir: ${FIXTURE_PLUGINS}`,
    `dataDir: ${join(dir, 'data')}`,
    'bots:',
    `  - { name: stuck, appId: "1020000001", secret: s, endpoint: "${apiUrl}", tokenEndpoint: "${apiUrl}/app/getAppAccessToken", plugins: { alpha: {} } }`,
  ].join('\n'));
  const { child, output, exited } = startBot(dir);
  try {
    const deadline = Date.now() + 60_000;
    while (sockets.size === 0) {
      assert.ok(Date.now() < deadline, `the bot never reached the gateway:\n${output.stdout}\n${output.stderr}`);
      assert.equal(child.exitCode, null, `bot exited early:\n${output.stdout}\n${output.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    child.kill('SIGTERM');
    assert.equal(await exited, 0, output.stderr);
    assert.match(output.stdout, /shutting down during start-up/);
    assert.doesNotMatch(output.stdout, /bots running/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    for (const socket of sockets) socket.destroy();
    silent.close();
    api.close();
  }
});
