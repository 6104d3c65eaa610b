/**
 * The event path's guarantees, end to end through the real simulator, gateway, sandbox and OpenAPI
 * client: nothing is lost without a trace (every event ends handled or dropped with a reason that is
 * counted, logged and shown), bursts wait instead of being dropped, and sends keep to the platform's
 * rates before the platform has to refuse them. Counts are asserted, never timings.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../runtime/config/index.ts';
import { createLogger } from '../runtime/logging/logger.ts';
import { Runtime, type RuntimeOptions } from '../runtime/runtime.ts';
import type { OutboxEntry, Simulator } from '../runtime/simulator/index.ts';

const REPO_PLUGINS = fileURLToPath(new URL('../plugins', import.meta.url));
const FIXTURE_PLUGINS = fileURLToPath(new URL('./fixtures/runtime/plugins', import.meta.url));

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

interface Started {
  runtime: Runtime;
  sim: Simulator;
  logs: Array<Record<string, unknown>>;
}

async function start(pluginsDir: string, botYaml: string, simulator: RuntimeOptions['simulator'] = {}, supervisor: RuntimeOptions['supervisor'] = {}): Promise<Started> {
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-delivery-'));
  writeFileSync(join(dir, 'bot.yaml'), `pluginsDir: ${pluginsDir}\ndataDir: ${join(dir, 'data')}\n${botYaml}`);
  const logs: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const runtime = new Runtime({
    config: loadConfig(join(dir, 'bot.yaml'), { env: {} }),
    logger: createLogger({ level: 'warn', destination }),
    console: false,
    metricsServer: false,
    watch: false,
    simulator,
    supervisor,
  });
  await runtime.start();
  return { runtime, sim: runtime.simulator!, logs };
}

/** msg_id → replies to it */
function repliesByMessage(outbox: OutboxEntry[]): Map<string, OutboxEntry[]> {
  const by = new Map<string, OutboxEntry[]>();
  for (const e of outbox) if (e.msg_id) by.set(e.msg_id, [...(by.get(e.msg_id) ?? []), e]);
  return by;
}

/** `name{labels} value` → value, for one series of the exposition text */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (want.every((l) => line.includes(l))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

test('a burst of 5,000 AT_MESSAGE_CREATE over 1,000 channels: 5,000 replies, none twice, nothing dropped', async () => {
  const { runtime, sim } = await start(REPO_PLUGINS, 'bots:\n  - { name: busy, appId: "1020000001", endpoint: simulator, shards: 1, plugins: { echo: {} } }\n');
  try {
    const { ids } = sim.postBurst({ kind: 'guild_at', count: 5000, targets: 1000, content: 'burst' });
    const bot = runtime.bots.get('busy')!;
    await until('every event to end', () => bot.counts.received === 5000 && bot.counts.inFlight === 0, 120_000);
    await until('every reply to land', () => repliesByMessage(sim.outbox()).size >= 5000, 30_000);
    const replies = repliesByMessage(sim.outbox());
    const missing = ids.filter((id) => !replies.has(id));
    const twice = ids.filter((id) => (replies.get(id)?.length ?? 0) > 1);
    assert.deepEqual({ missing: missing.length, twice: twice.length }, { missing: 0, twice: 0 });
    const counts = bot.counts;
    assert.deepEqual({ received: counts.received, handled: counts.handled, dropped: counts.dropped }, { received: 5000, handled: 5000, dropped: 0 });
    assert.equal((sim.info() as { refusedForChannelRate: number }).refusedForChannelRate, 0, 'the platform refused no send for rate');
    assert.doesNotMatch(await runtime.metrics.text(), /^qqbot_events_dropped_total\{/m);
  } finally {
    await runtime.stop();
  }
});

test('a plugin whose backlog is full drops the overflow loudly (metrics, a log line, its stats); the other plugin of the bot loses nothing', async () => {
  // laggard's manifest allows it 64 KiB of backlog, and it answers ~400 events/s at most (a 40 ms timer, 16 at once)
  const { runtime, sim, logs } = await start(FIXTURE_PLUGINS, 'bots:\n  - { name: tight, appId: "1020000001", endpoint: simulator, plugins: { alpha: {}, laggard: {} } }\n');
  try {
    const total = 3000;
    const { ids } = sim.postBurst({ kind: 'c2c', count: total, targets: 300, content: 'flood' });
    const bot = runtime.bots.get('tight')!;
    await until('every event to end', () => bot.counts.received === total && bot.counts.inFlight === 0, 120_000);
    const replies = repliesByMessage(sim.outbox());
    const byPlugin = (prefix: string) => ids.filter((id) => (replies.get(id) ?? []).some((e) => String(e.body.content).startsWith(prefix))).length;
    assert.equal(byPlugin('alpha: '), total, 'alpha answered every event');

    const dropped = bot.counts.droppedDeliveries.backlog_full ?? 0;
    assert.ok(dropped > 0, 'the burst overflowed laggard\'s backlog');
    // every event ends handled or dropped with a reason: laggard's answers + its drops = all of them
    assert.equal(byPlugin('laggard: ') + dropped, total);
    assert.equal(bot.counts.handled + bot.counts.dropped, total);
    const metrics = await runtime.metrics.text();
    assert.equal(sample(metrics, 'qqbot_events_dropped_total', { bot: 'tight', plugin: 'laggard', reason: 'backlog_full' }), dropped);
    assert.equal(sample(metrics, 'qqbot_events_dropped_total', { bot: 'tight', plugin: 'alpha', reason: 'backlog_full' }), 0);
    const stats = runtime.supervisor.stats().find((s) => s.id === 'tight/laggard')!;
    assert.equal(stats.dropped.backlog_full, dropped);
    const view = runtime.view.snapshot().bots[0]!.plugins.find((p) => p.name === 'laggard')!;
    assert.equal(view.dropped.backlog_full, dropped, 'the console row shows it');
    const warned = logs.filter((l) => l.plugin === 'laggard' && l.reason === 'backlog_full');
    assert.ok(warned.length >= 1, 'logged');
    assert.ok(warned.length < 10, `aggregated, not one line per event (${warned.length} lines)`);
  } finally {
    await runtime.stop();
  }
});

test('sends keep to the platform: 20 replies into one channel go at ≤ 5/s with none refused; 100 channels are answered concurrently; a rate limit pauses a route and what waits behind it still goes once', async () => {
  const { runtime, sim } = await start(REPO_PLUGINS, 'bots:\n  - { name: polite, appId: "1020000001", endpoint: simulator, shards: 1, plugins: { echo: {} } }\n', { apiLatencyMs: 20 });
  try {
    const bot = runtime.bots.get('polite')!;
    const answered = (ids: string[]) => {
      const replies = repliesByMessage(sim.outbox());
      return ids.every((id) => replies.get(id)?.length === 1) && ids.length;
    };

    // one channel, 20 messages at once: the simulator refuses a sixth send within a second
    const one = sim.postBurst({ kind: 'guild_at', count: 20, targets: 1, content: 'same channel' }).ids;
    await until('20 replies in one channel', () => answered(one));
    assert.equal((sim.info() as { refusedForChannelRate: number }).refusedForChannelRate, 0, 'paced before the platform had to refuse');

    // 100 channels: the platform sees more than one request at a time
    const many = sim.postBurst({ kind: 'guild_at', count: 100, targets: 100, content: 'many channels' }).ids;
    await until('100 replies', () => answered(many));
    assert.ok((sim.info() as { apiInFlight: { max: number } }).apiInFlight.max > 1, 'sends to different channels ran concurrently');

    // the platform rate-limits the channel route three times (429, code 20028): it pauses, nothing is lost
    sim.fault({ kind: 'rate_limit', route: 'POST /channels/{channel_id}/messages', count: 3, retryAfterSec: 1 });
    const limited = sim.postBurst({ kind: 'guild_at', count: 8, targets: 2, content: 'after a limit' }).ids;
    await until('replies after the rate limit', () => answered(limited));
    await until('every event handled', () => bot.counts.inFlight === 0);
    assert.equal(bot.counts.dropped, 0);
    const metrics = await runtime.metrics.text();
    assert.equal(sample(metrics, 'qqbot_api_requests_total', { bot: 'polite', route: 'POST /channels/:id/messages', status: '429' }), 3, 'the three limits were met, each retried');
  } finally {
    await runtime.stop();
  }
});

test('kill -9 of the plugin host at ~300 messages/s: every event is answered or counted as dropped, and the restart shows in /metrics and on the console', async () => {
  const { runtime, sim } = await start(FIXTURE_PLUGINS, 'bots:\n  - { name: hardy, appId: "1020000001", endpoint: simulator, plugins: { alpha: {} } }\n', {}, { restartBackoffMs: { min: 100, max: 1000 } });
  try {
    const bot = runtime.bots.get('hardy')!;
    const ids: string[] = [];
    const started = Date.now();
    let killed = false;
    while (Date.now() - started < 3000) {
      for (let i = 0; i < 3; i++) ids.push(sim.postMessage({ kind: 'c2c', content: `m${ids.length}`, user: { id: `U${ids.length % 50}` } }).id);
      if (!killed && Date.now() - started > 1000) {
        process.kill(runtime.supervisor.hostPid!, 'SIGKILL');
        killed = true;
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await until('every event to end', () => bot.counts.received === ids.length && bot.counts.inFlight === 0);
    const replies = repliesByMessage(sim.outbox());
    const answered = ids.filter((id) => replies.has(id)).length;
    const dropped = Object.values(bot.counts.droppedDeliveries).reduce((sum, n) => sum + n, 0);
    console.log(`# host killed at ~300 msg/s: posted ${ids.length}, answered ${answered}, dropped ${JSON.stringify(bot.counts.droppedDeliveries)}`);
    assert.equal(answered + dropped, ids.length, `in = answered + dropped (${answered} + ${JSON.stringify(bot.counts.droppedDeliveries)})`);
    assert.ok(ids.every((id) => (replies.get(id)?.length ?? 0) <= 1), 'nothing answered twice');
    assert.ok(answered > ids.length / 2, 'most were answered: what waited for the host was delivered after its restart');
    const metrics = await runtime.metrics.text();
    assert.ok(sample(metrics, 'qqbot_plugin_restarts_total', { bot: 'hardy', plugin: 'alpha' }) >= 1, 'the restart is counted');
    assert.ok(sample(metrics, 'qqbot_plugin_host_crashes_total', { kind: 'exited' }) >= 1, 'the crash is counted');
    const view = runtime.view.snapshot().bots[0]!.plugins.find((p) => p.name === 'alpha')!;
    assert.ok(view.restarts >= 1, 'the console shows the restart');
    for (const [reason, n] of Object.entries(bot.counts.droppedDeliveries)) {
      assert.equal(sample(metrics, 'qqbot_events_dropped_total', { bot: 'hardy', plugin: 'alpha', reason }), n);
    }
  } finally {
    await runtime.stop();
  }
});

test('a handler cut off after it replied (its host killed -9, its time limit hit) counts as handled, not lost, and is logged as cut off; a plugin that had not replied yet is counted as dropped', async () => {
  const plugins = mkdtempSync(join(tmpdir(), 'qqbot-cutoff-'));
  const plugin = (name: string, body: string) => {
    mkdirSync(join(plugins, name));
    writeFileSync(join(plugins, name, 'package.json'), JSON.stringify({ name, version: '1.0.0', type: 'module', main: 'index.ts', qqbot: { events: ['C2C_MESSAGE_CREATE'], permissions: ['messages.send', 'storage'] } }));
    writeFileSync(join(plugins, name, 'index.ts'), `export default function setup(ctx) {\n  ctx.on('C2C_MESSAGE_CREATE', async (event) => {\n${body}\n  });\n}\n`);
  };
  // answers, then spins (its entry time limit) or never finishes (until the host is killed)
  plugin('stall', "    await event.reply('stall: ' + event.data.content);\n    if (event.data.content === 'spin') for (;;) {}\n    await new Promise(() => {});");
  // never answers the message that gets the host killed; its storage call makes the delivery one not to repeat
  plugin('mute', "    if (event.data.content !== 'hang') return;\n    await ctx.storage.set('seen', true);\n    await new Promise(() => {});");
  const { runtime, sim, logs } = await start(plugins, 'bots:\n  - { name: cut, appId: "1020000001", endpoint: simulator, plugins: { stall: {}, mute: {} } }\n', {}, { restartBackoffMs: { min: 100, max: 1000 } });
  try {
    const bot = runtime.bots.get('cut')!;
    const spin = sim.postMessage({ kind: 'c2c', content: 'spin', user: { id: 'U1' } }).id;
    await until('the spinning handler ended', () => bot.counts.received === 1 && bot.counts.inFlight === 0);
    assert.equal(repliesByMessage(sim.outbox()).get(spin)?.length, 1, 'answered once');
    assert.deepEqual(bot.counts.droppedDeliveries, {}, 'answered before its time limit: not a loss');

    const hang = sim.postMessage({ kind: 'c2c', content: 'hang', user: { id: 'U2' } }).id;
    await until('the reply before the kill', () => repliesByMessage(sim.outbox()).has(hang));
    process.kill(runtime.supervisor.hostPid!, 'SIGKILL');
    await until('the event ended with the host', () => bot.counts.received === 2 && bot.counts.inFlight === 0);
    assert.equal(repliesByMessage(sim.outbox()).get(hang)?.length, 1);
    assert.deepEqual(bot.counts.droppedDeliveries, { host_crashed: 1 }, 'only mute, which had not answered, lost the event with the host');
    assert.equal(bot.counts.handled + bot.counts.dropped, 2, 'in = handled + dropped');
    assert.equal(bot.counts.dropped, 1, 'the event is dropped for mute (one of its plugins did not handle it)');
    const cutOff = logs.filter((l) => String(l.msg).startsWith('plugin handler cut off after it replied'));
    assert.deepEqual(cutOff.map((l) => [l.plugin, l.reason]), [['stall', 'timeout'], ['stall', 'host_crashed']]);
  } finally {
    await runtime.stop();
  }
});
