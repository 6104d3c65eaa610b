import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { loadConfig } from '../runtime/config/index.ts';
import { createLogger } from '../runtime/logging/logger.ts';
import { Runtime, type RuntimeOptions } from '../runtime/runtime.ts';
import type { OutboxEntry } from '../runtime/simulator/index.ts';
import { startRedis } from './support/redis-server.ts';

const FIXTURE_PLUGINS = fileURLToPath(new URL('./fixtures/runtime/plugins', import.meta.url));

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function project(botYaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-runtime-'));
  writeFileSync(join(dir, 'bot.yaml'), `pluginsDir: ${FIXTURE_PLUGINS}\ndataDir: ${join(dir, 'data')}\n${botYaml}`);
  return join(dir, 'bot.yaml');
}

async function startRuntime(file: string, options: { console?: boolean; metrics?: boolean; simulator?: RuntimeOptions['simulator']; supervisor?: RuntimeOptions['supervisor'] } = {}): Promise<Runtime> {
  const runtime = new Runtime({
    config: loadConfig(file, { env: {} }),
    logger: createLogger({ level: 'warn', pretty: false }),
    console: options.console ?? false,
    metricsServer: options.metrics ?? false,
    ...(options.simulator ? { simulator: options.simulator } : {}),
    ...(options.supervisor ? { supervisor: options.supervisor } : {}),
  });
  await runtime.start();
  return runtime;
}

const replyTo = (outbox: OutboxEntry[], id: string) => outbox.filter((entry) => entry.msg_id === id);

test('two bots in one bot.yaml answer only with their own plugins, configured by folder or package name', async () => {
  const runtime = await startRuntime(project([
    'bots:',
    '  - { name: first, appId: "1020000001", endpoint: simulator, plugins: { alpha: {} } }',
    // enabled by its npm package name, with its config under that name
    '  - { name: second, appId: "1020000002", endpoint: simulator, plugins: { qqbot-plugin-beta: { prefix: "B> " } } }',
  ].join('\n')));
  try {
    const sim = runtime.simulator!;
    assert.deepEqual([...runtime.bots.values()].map((b) => b.state), ['running', 'running']);
    const toFirst = sim.postMessage({ appId: '1020000001', kind: 'group_at', content: 'one' });
    const toSecond = sim.postMessage({ appId: '1020000002', kind: 'c2c', content: 'two' });
    await until('both replies', () => replyTo(sim.outbox(), toFirst.id).length > 0 && replyTo(sim.outbox(), toSecond.id).length > 0);
    await new Promise((resolve) => setTimeout(resolve, 200)); // room for a wrong extra reply to show up
    const first = sim.outbox().filter((e) => e.appId === '1020000001');
    const second = sim.outbox().filter((e) => e.appId === '1020000002');
    assert.deepEqual(first.map((e) => e.body.content), ['alpha: one']);
    assert.deepEqual(second.map((e) => e.body.content), ['B> two']);
  } finally {
    await runtime.stop();
  }
});

test('the same plugin answers on both transports: websocket shards and signed webhook delivery', async () => {
  const runtime = await startRuntime(project([
    'bots:',
    '  - { name: ws, appId: "1020000001", endpoint: simulator, plugins: { alpha: {} } }',
    '  - name: hook',
    '    appId: "1020000002"',
    '    endpoint: simulator',
    '    transport: { webhook: { port: 0, host: 127.0.0.1, path: /qqbot } }',
    '    plugins: { alpha: {} }',
  ].join('\n')));
  try {
    const sim = runtime.simulator!;
    assert.equal(runtime.bots.get('hook')!.state, 'running');
    const viaSocket = sim.postMessage({ appId: '1020000001', kind: 'c2c', content: 'by socket' });
    const viaHook = sim.postMessage({ appId: '1020000002', kind: 'group_at', content: 'by webhook' });
    await until('both replies', () => replyTo(sim.outbox(), viaSocket.id).length === 1 && replyTo(sim.outbox(), viaHook.id).length === 1);
    assert.equal(replyTo(sim.outbox(), viaHook.id)[0]!.body.content, 'alpha: by webhook');
    assert.equal(replyTo(sim.outbox(), viaSocket.id)[0]!.body.content, 'alpha: by socket');
    // the webhook delivery was signed, verified and acknowledged with op 12
    const log = sim.webhookLog().filter((entry) => entry.appId === '1020000002');
    assert.ok(log.some((entry) => entry.kind === 'validation' && entry.outcome === 'ok'));
    const delivered = log.filter((entry) => entry.kind === 'dispatch' && entry.t === 'GROUP_AT_MESSAGE_CREATE');
    assert.equal(delivered.length, 1);
    assert.equal(delivered[0]!.outcome, 'ok');
    assert.deepEqual(JSON.parse(delivered[0]!.body ?? ''), { op: 12, d: 0 });
  } finally {
    await runtime.stop();
  }
});

test('a bot that cannot start is reported while the other bots run', async () => {
  const runtime = await startRuntime(project([
    'bots:',
    '  - { name: good, appId: "1020000001", endpoint: simulator, plugins: { alpha: {} } }',
    // no plugin subscribes to anything and no intents: refusing beats a silent GUILDS fallback
    '  - { name: empty, appId: "1020000002", endpoint: simulator, plugins: {} }',
  ].join('\n')));
  try {
    const good = runtime.bots.get('good')!;
    const empty = runtime.bots.get('empty')!;
    assert.equal(good.state, 'running');
    assert.equal(empty.state, 'failed');
    assert.match(empty.error?.message ?? '', /no intents/);
    const sim = runtime.simulator!;
    const posted = sim.postMessage({ appId: '1020000001', kind: 'c2c', content: 'still here' });
    await until('reply from the good bot', () => replyTo(sim.outbox(), posted.id).length === 1);
  } finally {
    await runtime.stop();
  }
});

test('a fatal gateway close (intents not permitted) stops that bot with the cause, once, while the other bot runs', async () => {
  const runtime = await startRuntime(project([
    'bots:',
    '  - { name: public, appId: "1020000001", endpoint: simulator, plugins: { guildwatch: {} } }',
    '  - { name: other, appId: "1020000002", endpoint: simulator, plugins: { alpha: {} } }',
  ].join('\n')), {
    simulator: {
      bots: [
        { appId: '1020000001', secret: 'simulator-secret', deniedIntents: 1 << 9 },
        { appId: '1020000002', secret: 'simulator-secret' },
      ],
    },
  });
  try {
    const failed = runtime.bots.get('public')!;
    assert.equal(failed.state, 'failed');
    assert.equal((failed.error as { code?: string } | undefined)?.code, 'E_GATEWAY_INTENTS');
    assert.match(failed.error?.message ?? '', /4014/);
    assert.deepEqual(runtime.supervisor.stats().filter((s) => s.id.startsWith('public/') && s.status !== 'stopped'), [], 'a failed bot frees its isolates');
    const sim = runtime.simulator!;
    const posted = sim.postMessage({ appId: '1020000002', kind: 'c2c', content: 'alive' });
    await until('the other bot answers', () => replyTo(sim.outbox(), posted.id).length === 1);
    await new Promise((resolve) => setTimeout(resolve, 500)); // a retry storm would show up here
    const identifies = sim.sessionLog().filter((entry) => entry.appId === '1020000001' && entry.kind === 'identify');
    assert.equal(identifies.length, 1, 'no retry after a configuration error');
  } finally {
    await runtime.stop();
  }
});

// V8 up to Node 24 aborts the whole plugin host on this OOM; Node 26's V8 unwinds it inside the isolate.
test('a plugin that exhausts V8 (aborting the plugin host where V8 cannot unwind it): the gateway session stays up, the culprit is quarantined, the other plugin answers every event', async () => {
  const runtime = await startRuntime(project('bots:\n  - { name: tough, appId: "1020000001", endpoint: simulator, plugins: { alpha: {}, oom: {} } }\n'), {
    supervisor: { restartBackoffMs: { min: 50, max: 500 } },
  });
  try {
    const sim = runtime.simulator!;
    let crashed = false;
    runtime.supervisor.once('host-crashed', () => (crashed = true));
    const restarted = new Promise<void>((resolve) => runtime.supervisor.once('host-restarted', () => resolve()));
    const before = sim.sessions().filter((s) => s.appId === '1020000001').map((s) => s.sessionId);
    const posted: string[] = [];
    const deadline = Date.now() + 120_000;
    let quarantined = false;
    while (!quarantined) {
      assert.ok(Date.now() < deadline, 'the oom plugin was never quarantined');
      posted.push(sim.postMessage({ kind: 'c2c', content: `n${posted.length}` }).id);
      await new Promise((resolve) => setTimeout(resolve, 20));
      quarantined = runtime.supervisor.stats().some((s) => s.id === 'tough/oom' && s.status === 'quarantined');
    }
    if (crashed) await restarted;
    // a few more after the quarantine, then every event must have its alpha answer
    for (let i = 0; i < 5; i++) posted.push(sim.postMessage({ kind: 'c2c', content: `after${i}` }).id);
    await until('alpha answered every event', () => posted.every((id) => replyTo(sim.outbox(), id).length === 1), 60_000);
    const after = sim.sessions().filter((s) => s.appId === '1020000001');
    assert.deepEqual(after.map((s) => s.sessionId), before, 'the same gateway session throughout');
    assert.ok(after.every((s) => s.connected));
    assert.equal(sim.sessionLog().filter((e) => e.appId === '1020000001' && e.kind === 'identify').length, 1, 'never re-identified');
    assert.equal(runtime.bots.get('tough')!.state, 'running');
  } finally {
    await runtime.stop();
  }
});

test('plugin storage on Redis: data lands in Redis, an outage fails storage calls fast, the bot recovers with it', async () => {
  const redis = await startRedis();
  const runtime = await startRuntime(project([
    'bots:',
    `  - { name: kv, appId: "1020000001", endpoint: simulator, storage: { redis: "${redis.url}" }, plugins: { counter: {}, alpha: {} } }`,
  ].join('\n')));
  const sim = runtime.simulator!;
  const ask = async (content: string) => {
    const { id } = sim.postMessage({ kind: 'c2c', content });
    const replies = await until(`replies to ${content}`, () => {
      const found = replyTo(sim.outbox(), id);
      return found.length === 2 ? found : undefined;
    });
    return replies.map((entry) => String(entry.body.content)).sort();
  };
  try {
    assert.deepEqual(await ask('a'), ['alpha: a', 'count 1']);
    assert.deepEqual(await ask('b'), ['alpha: b', 'count 2']);
    const { Redis } = await import('ioredis');
    const client = new Redis(redis.url);
    try {
      const keys = await client.keys('*');
      assert.ok(keys.length > 0 && keys.every((key) => key.includes('kv') && key.includes('counter')), `only the counter plugin's namespace on bot kv: ${keys.join(', ')}`);
    } finally {
      client.disconnect();
    }

    await redis.stop();
    const during = await ask('c');
    assert.equal(during[0], 'alpha: c', 'the other plugin keeps answering');
    assert.equal(during[1], 'storage failed: E_STORAGE_UNAVAILABLE');

    await redis.start();
    // redis came back empty (no persistence): counting starts again once the client reconnects
    const deadline = Date.now() + 20_000;
    for (let i = 0; ; i++) {
      const after = await ask(`d${i}`);
      if (after[1] === 'count 1') break;
      assert.ok(Date.now() < deadline, `storage did not recover: ${after.join(' / ')}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal(runtime.bots.get('kv')!.state, 'running');
  } finally {
    await runtime.stop();
    await redis.stop();
  }
});

test('a bot whose Redis storage is unreachable at start fails with the URL (password hidden); the others run', async () => {
  const redis = await startRedis();
  await redis.stop(); // a port that nothing listens on any more
  const runtime = await startRuntime(project([
    'bots:',
    `  - { name: lost, appId: "1020000001", endpoint: simulator, storage: { redis: "redis://:hunter22@127.0.0.1:${redis.port}" }, plugins: { counter: {} } }`,
    '  - { name: fine, appId: "1020000002", endpoint: simulator, plugins: { alpha: {} } }',
  ].join('\n')));
  try {
    const lost = runtime.bots.get('lost')!;
    assert.equal(lost.state, 'failed');
    assert.match(lost.error?.message ?? '', new RegExp(`cannot reach the Redis storage at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${redis.port}`));
    assert.ok(!(lost.error?.message ?? '').includes('hunter22'));
    assert.equal(runtime.bots.get('fine')!.state, 'running');
  } finally {
    await runtime.stop();
  }
});

test('/metrics parses as Prometheus text and its counters move with traffic', async () => {
  const runtime = await startRuntime(project('metrics: { port: 0 }\nbots:\n  - { name: m, appId: "1020000001", endpoint: simulator, plugins: { alpha: {} } }\n'), { metrics: true });
  try {
    const scrape = async () => {
      const res = await fetch(`http://127.0.0.1:${runtime.metricsPort}/metrics`);
      assert.equal(res.status, 200);
      return parseExposition(await res.text());
    };
    const sample = (samples: Map<string, number>, name: string, labels: Record<string, string>) => {
      const key = `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',')}}`;
      return samples.get(key) ?? 0;
    };
    const before = await scrape();
    const sim = runtime.simulator!;
    const ids = Array.from({ length: 5 }, (_, i) => sim.postMessage({ kind: 'c2c', content: `m${i}` }).id);
    await until('5 replies', () => ids.every((id) => replyTo(sim.outbox(), id).length === 1));
    await until('handlers recorded', () => runtime.bots.get('m')!.counts.handled >= 5);
    const after = await scrape();
    const received = { bot: 'm', type: 'C2C_MESSAGE_CREATE', transport: 'websocket' };
    assert.equal(sample(after, 'qqbot_events_received_total', received) - sample(before, 'qqbot_events_received_total', received), 5);
    const sends = { bot: 'm', route: 'POST /v2/users/:id/messages', status: '200' };
    assert.equal(sample(after, 'qqbot_api_requests_total', sends) - sample(before, 'qqbot_api_requests_total', sends), 5);
    const handled = { bot: 'm', plugin: 'alpha', status: 'ok' };
    assert.equal(sample(after, 'qqbot_handler_duration_seconds_count', handled) - sample(before, 'qqbot_handler_duration_seconds_count', handled), 5);
    assert.equal(sample(after, 'qqbot_shard_state', { bot: 'm', shard: '0', state: 'ready' }), 1);
  } finally {
    await runtime.stop();
  }
});

test('the console in a real browser: chat with the bot, see shard and plugin rows', async () => {
  const runtime = await startRuntime(project('console: { port: 0 }\nbots:\n  - { name: demo, appId: "1020000001", endpoint: simulator, plugins: { alpha: {}, beta: {} } }\n'), { console: true });
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage({ viewport: { width: 1360, height: 820 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(runtime.consoleUrl!);
    await page.locator('tr[data-bot="demo"][data-shard="0"]').waitFor();
    await page.locator('tr[data-bot="demo"][data-plugin="alpha"]').waitFor();
    await page.locator('tr[data-bot="demo"][data-plugin="beta"]').waitFor();
    await page.selectOption('#chat-kind', 'group_at');
    await page.fill('#chat-input', 'hello from the browser');
    await page.click('#chat-send');
    const replies = page.locator('#chat-messages li[data-from="bot"]');
    await replies.filter({ hasText: 'alpha: hello from the browser' }).waitFor();
    await replies.filter({ hasText: 'beta: hello from the browser' }).waitFor();
    assert.match(await page.locator('tr[data-bot="demo"][data-shard="0"]').innerText(), /ready/);
    mkdirSync('test-artifacts', { recursive: true });
    await page.screenshot({ path: 'test-artifacts/console-runtime.png', fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser?.close();
    await runtime.stop();
  }
});

/** `name{a="1",b="2"} value` lines → map; every sample's family must have a # TYPE line. */
function parseExposition(text: string): Map<string, number> {
  const types = new Set<string>();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.add(type[1]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/.exec(line);
    assert.ok(match, `not an exposition line: ${line}`);
    const [, name, labelText, value] = match;
    const family = name!.replace(/_(bucket|sum|count)$/, '');
    assert.ok(types.has(name!) || types.has(family), `no # TYPE for ${name}`);
    const labels = [...(labelText ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((m) => `${m[1]}="${m[2]}"`).sort();
    samples.set(`${name}{${labels.join(',')}}`, Number(value));
  }
  return samples;
}
