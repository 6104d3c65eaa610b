import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSimulator, type Simulator } from '../runtime/simulator/index.ts';
import { qqbotExit, runQQBot } from './support/qqbot-process.ts';

// `qqbot start` fails whole and loud: a listener it cannot bind, or no bot left running, ends the
// process with exit 1 and the reason at its place in bot.yaml, instead of a half-started runtime.

const FIXTURE_PLUGINS = fileURLToPath(new URL('./fixtures/runtime/plugins', import.meta.url));

function project(lines: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-fail-'));
  writeFileSync(join(dir, 'bot.yaml'), [`pluginsDir: ${FIXTURE_PLUGINS}`, `dataDir: ${join(dir, 'data')}`, ...lines].join('\n'));
  return dir;
}

/** A websocket bot on `sim` answering with the alpha plugin. */
const wsBot = (sim: Simulator, name = 'ws') =>
  `  - { name: ${name}, appId: "1020000001", secret: simulator-secret, endpoint: "${sim.url}", tokenEndpoint: "${sim.url}/app/getAppAccessToken", shards: 1, plugins: { alpha: {} } }`;

async function holdPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as { port: number }).port, server };
}

const identifies = (sim: Simulator) => sim.sessionLog().length;

test('a console, metrics or webhook port in use stops start-up before any bot connects: exit 1 with the setting\'s place', async () => {
  const sim = await startSimulator({ printCredentials: false });
  const held = await holdPort();
  try {
    const cases = [
      { lines: [`console: { port: ${held.port} }`], where: /bot\.yaml:3:18: console\.port: the console cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE \(another process is listening there\)/ },
      { lines: [`metrics: { port: ${held.port} }`], where: /bot\.yaml:3:18: metrics\.port: the metrics endpoint cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/ },
      {
        lines: [],
        hook: `  - { name: hook, appId: "1020000002", secret: hook-secret, endpoint: "${sim.url}", transport: { webhook: { port: ${held.port}, path: /qq } }, plugins: { alpha: {} } }`,
        where: /bot\.yaml:5:\d+: bots\[1\]\.transport\.webhook\.port: bot hook's webhook cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/,
      },
    ];
    for (const { lines, hook, where } of cases) {
      const dir = project([...lines, 'bots:', wsBot(sim), ...(hook ? [hook] : [])]);
      const run = await qqbotExit(['start', 'bot.yaml'], dir);
      assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
      assert.match(run.stderr, new RegExp(`^qqbot start: ${where.source}`, 'm'));
      assert.doesNotMatch(run.stdout, /bots running/);
      assert.equal(identifies(sim), 0, 'no bot connected');
    }
  } finally {
    held.server.close();
    await sim.close();
  }
});

test('every bot failing at start exits 1 with each failure at its bot.yaml entry', async () => {
  const dir = project(['bots:', '  - { name: a, appId: "1020000001", endpoint: simulator, plugins: {} }', '  - name: b', '    appId: "1020000002"', '    endpoint: simulator', '    plugins: {}']);
  const run = await qqbotExit(['start', 'bot.yaml'], dir);
  assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /0\/2 bots running/);
  assert.match(run.stderr, /^qqbot start: no bot is running \(set whenNoBotRuns: stay in bot\.yaml or pass --stay-up/m);
  assert.match(run.stderr, /^ {2}bot\.yaml:4:5: bot a failed: no intents/m);
  assert.match(run.stderr, /^ {2}bot\.yaml:5:5: bot b failed: no intents/m);
});

test('told to stay up, a runtime with no bot running serves on, and one SIGTERM stops it with exit 0', async () => {
  for (const variant of [{ yaml: ['whenNoBotRuns: stay'], args: [] }, { yaml: [], args: ['--stay-up'] }]) {
    const dir = project([...variant.yaml, 'console: { port: 0 }', 'bots:', '  - { name: a, appId: "1020000001", endpoint: simulator, plugins: {} }']);
    const run = runQQBot(['start', 'bot.yaml', ...variant.args], dir);
    try {
      await run.waitFor(/0\/1 bots running/);
      await run.waitFor(/console: http:\/\/127\.0\.0\.1:\d+\//);
      const console = /console: (http:\/\/127\.0\.0\.1:\d+)\//.exec(run.output.stdout)![1]!;
      assert.equal((await fetch(`${console}/api/state`)).status, 200, 'still serving');
      run.child.kill('SIGTERM');
      assert.equal(await run.exited, 0, run.output.stderr);
    } finally {
      run.kill();
    }
  }
});

test('when the last running bot fails later (banned: close 4915), the process exits 1 with the cause', async () => {
  const sim = await startSimulator({ printCredentials: false });
  const dir = project(['bots:', wsBot(sim, 'only')]);
  const run = runQQBot(['start', 'bot.yaml'], dir);
  try {
    await run.waitFor(/1\/1 bots running/);
    sim.fault({ kind: 'close', code: 4915 });
    assert.equal(await run.exited, 1, run.output.stderr);
    assert.match(run.output.stderr, /^qqbot start: no bot is running .*\n {2}bot\.yaml:4:5: bot only failed: .*bot is banned \(4915\)/m);
  } finally {
    run.kill();
    await sim.close();
  }
});

test('qqbot check and qqbot start refuse each bad bot.yaml with exit 1 and the place', async () => {
  const bot = (extra = '') => `  - { name: a, appId: "1", secret: s${extra} }`;
  const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]', ...['b', 'c', 'd', 'e', 'f'].map((n, i) => `${n}: &${n} [${Array(9).fill(`*${'abcdef'[i]}`).join(', ')}]`)];
  const cases: Array<{ name: string; text: string | Buffer; where: RegExp }> = [
    { name: 'port clash', text: ['console: { port: 8080 }', 'metrics: { port: 8080 }', 'bots:', bot()].join('\n'), where: /bot\.yaml:2:18: metrics\.port: port 8080 is also console\.port \(bot\.yaml:1:18\)/ },
    { name: 'open console', text: ['console: { port: 8080, host: 0.0.0.0 }', 'bots:', bot()].join('\n'), where: /bot\.yaml:1:30: console\.host: the console would listen on 0\.0\.0\.0, which other machines can reach, without a token/ },
    { name: 'duplicate appId', text: ['bots:', bot(), '  - { name: b, appId: "1", secret: s }'].join('\n'), where: /bot\.yaml:3:23: bots\[1\]\.appId: app 1 on production is also bot "a" \(bot\.yaml:2:23\)/ },
    { name: 'alias bomb', text: [...bomb, 'bots: *f'].join('\n'), where: /bot\.yaml:2:8: b\[0\]: YAML aliases here expand to more than 100 copies/ },
    { name: 'latin-1 secret', text: Buffer.concat([Buffer.from('bots:\n  - name: a\n    appId: "1"\n    secret: s'), Buffer.from([0xe9, 0x0a])]), where: /bot\.yaml:4:14: bots\[0\]\.secret: byte 0xe9 is not valid UTF-8/ },
    { name: 'UTF-16', text: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(['bots:', bot()].join('\n'), 'utf16le')]), where: /bot\.yaml: the file is UTF-16/ },
    { name: 'oversized', text: `bots:\n${bot()}\n#${'x'.repeat(1 << 21)}\n`, where: /bot\.yaml: the file is \d+ bytes; a bot\.yaml may be at most 1048576 bytes/ },
    { name: 'missing pluginsDir', text: ['pluginsDir: ./nowhere', 'bots:', bot()].join('\n'), where: /bot\.yaml:1:13: pluginsDir: the plugins folder nowhere does not exist/ },
    { name: 'shard count', text: ['bots:', bot(', shards: 100000000')].join('\n'), where: /bot\.yaml:2:47: bots\[0\]\.shards: 100000000 shards cannot start/ },
  ];
  for (const { name, text, where } of cases) {
    const dir = mkdtempSync(join(tmpdir(), 'qqbot-bad-'));
    mkdirSync(join(dir, 'plugins'));
    writeFileSync(join(dir, 'bot.yaml'), text);
    for (const command of ['check', 'start']) {
      const run = await qqbotExit([command, 'bot.yaml'], dir);
      assert.equal(run.code, 1, `${name}, ${command}: ${run.stdout}\n${run.stderr}`);
      assert.match(run.stderr, new RegExp(`^qqbot ${command}: ${where.source}`, 'm'), `${name}, ${command}`);
    }
  }
});
