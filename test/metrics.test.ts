import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RuntimeMetrics, SHARD_STATES } from '../runtime/metrics/metrics.ts';
import { startMetricsServer } from '../runtime/metrics/metrics-server.ts';
import { MetricsServerError } from '../runtime/metrics/errors.ts';

interface Sample { name: string; labels: Record<string, string>; value: number }
interface Exposition { types: Map<string, string>; samples: Sample[] }

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( \d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;

/** A strict reader of the Prometheus text format: throws on any line it does not understand. */
function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      assert.ok(m, `bad comment line: ${line}`);
      if (m[1] === 'TYPE') {
        assert.match(m[3]!, /^(counter|gauge|histogram|summary|untyped)$/, `bad type in: ${line}`);
        types.set(m[2]!, m[3]!);
      }
      continue;
    }
    const m = LINE.exec(line);
    assert.ok(m, `bad sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[3] ?? '';
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < body.length) {
      const l = LABEL.exec(body);
      assert.ok(l, `bad labels in: ${line}`);
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    // Go's ParseFloat (what Prometheus uses) takes NaN and Inf in any case; prom-client writes "Nan".
    const raw = m[4]!.toLowerCase();
    const value = raw === 'nan' ? NaN : /^[+-]?inf$/.test(raw) ? (raw.startsWith('-') ? -Infinity : Infinity) : Number(raw);
    assert.ok(raw === 'nan' || !Number.isNaN(value), `bad value in: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  for (const s of samples) {
    const family = [s.name, s.name.replace(/_(bucket|sum|count)$/, '')].find((n) => types.has(n));
    assert.ok(family, `sample ${s.name} has no # TYPE`);
  }
  return { types, samples };
}

function value(exp: Exposition, name: string, labels: Record<string, string>): number {
  const hit = exp.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return hit ? hit.value : 0;
}

async function scrape(port: number): Promise<{ status: number; contentType: string | null; exp: Exposition }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  return { status: res.status, contentType: res.headers.get('content-type'), exp: parseExposition(text) };
}

test('/metrics serves valid Prometheus text whose counters move with traffic', async (t) => {
  const metrics = new RuntimeMetrics();
  const server = await startMetricsServer({ port: 0, metrics });
  t.after(() => server.close());

  const before = await scrape(server.port);
  assert.equal(before.status, 200);
  assert.match(before.contentType ?? '', /^text\/plain; version=0\.0\.4/);
  assert.equal(before.exp.types.get('qqbot_events_received_total'), 'counter');
  assert.equal(before.exp.types.get('qqbot_handler_duration_seconds'), 'histogram');
  assert.equal(before.exp.types.get('qqbot_shard_state'), 'gauge');
  // default process metrics are on the runtime's own registry
  assert.ok(before.exp.samples.some((s) => s.name === 'process_cpu_user_seconds_total'));
  assert.ok(before.exp.samples.some((s) => s.name === 'nodejs_heap_size_used_bytes'));

  const ev = { bot: 'demo', type: 'AT_MESSAGE_CREATE', transport: 'websocket' };
  for (let i = 0; i < 5; i++) metrics.eventReceived('demo', 'AT_MESSAGE_CREATE', 'websocket');
  metrics.eventReceived('demo', 'C2C_MESSAGE_CREATE', 'webhook');
  metrics.eventDeduplicated('demo');
  metrics.eventDeduplicated('demo');
  metrics.handlerFinished('demo', 'echo', 'ok', 0.004);
  metrics.handlerFinished('demo', 'echo', 'ok', 0.3);
  metrics.handlerFinished('demo', 'dice', 'timeout', 5);
  metrics.apiCall('demo', 'POST /channels/{channel_id}/messages', 200, 0.05);
  metrics.apiCall('demo', 'POST /channels/{channel_id}/messages', 429, 0.02);
  metrics.rateLimitWait('demo', 'POST /channels/{channel_id}/messages', 1.5);
  metrics.reconnect('demo', 0, '4009');
  metrics.pluginRestart('demo', 'dice', 'timeout');
  metrics.pluginQuarantined('demo', 'dice');
  metrics.pluginReload('demo', 'echo', true);
  metrics.pluginReload('demo', 'echo', false);

  const after = (await scrape(server.port)).exp;
  const delta = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before.exp, name, labels);
  assert.equal(delta('qqbot_events_received_total', ev), 5);
  assert.equal(delta('qqbot_events_received_total', { bot: 'demo', type: 'C2C_MESSAGE_CREATE', transport: 'webhook' }), 1);
  assert.equal(delta('qqbot_events_deduplicated_total', { bot: 'demo' }), 2);
  assert.equal(delta('qqbot_handler_duration_seconds_count', { plugin: 'echo', status: 'ok' }), 2);
  assert.equal(value(after, 'qqbot_handler_duration_seconds_bucket', { plugin: 'echo', status: 'ok', le: '0.005' }), 1);
  assert.equal(value(after, 'qqbot_handler_duration_seconds_bucket', { plugin: 'echo', status: 'ok', le: '+Inf' }), 2);
  assert.ok(Math.abs(value(after, 'qqbot_handler_duration_seconds_sum', { plugin: 'echo', status: 'ok' }) - 0.304) < 1e-9);
  assert.equal(delta('qqbot_handler_duration_seconds_count', { plugin: 'dice', status: 'timeout' }), 1);
  const route = 'POST /channels/{channel_id}/messages';
  assert.equal(delta('qqbot_api_requests_total', { route, status: '200' }), 1);
  assert.equal(delta('qqbot_api_requests_total', { route, status: '429' }), 1);
  assert.equal(delta('qqbot_api_request_duration_seconds_count', { route }), 2);
  assert.equal(delta('qqbot_ratelimit_wait_seconds_count', { route }), 1);
  assert.equal(delta('qqbot_ratelimit_wait_seconds_sum', { route }), 1.5);
  assert.equal(delta('qqbot_shard_reconnects_total', { bot: 'demo', shard: '0', reason: '4009' }), 1);
  assert.equal(delta('qqbot_plugin_restarts_total', { plugin: 'dice', reason: 'timeout' }), 1);
  assert.equal(delta('qqbot_plugin_quarantines_total', { plugin: 'dice' }), 1);
  assert.equal(delta('qqbot_plugin_reloads_total', { plugin: 'echo', result: 'ok' }), 1);
  assert.equal(delta('qqbot_plugin_reloads_total', { plugin: 'echo', result: 'failed' }), 1);

  // more traffic keeps counting on the same series
  metrics.eventReceived('demo', 'AT_MESSAGE_CREATE', 'websocket');
  const again = (await scrape(server.port)).exp;
  assert.equal(value(again, 'qqbot_events_received_total', ev) - value(after, 'qqbot_events_received_total', ev), 1);
});

test('shard state gauge is 1 for the current state and 0 for every other', async (t) => {
  const metrics = new RuntimeMetrics({ defaultMetrics: false });
  const server = await startMetricsServer({ port: 0, metrics });
  t.after(() => server.close());

  const states = (exp: Exposition, shard: string): Record<string, number> =>
    Object.fromEntries(exp.samples.filter((s) => s.name === 'qqbot_shard_state' && s.labels.shard === shard).map((s) => [s.labels.state, s.value]));

  metrics.shardState('demo', 0, 'connecting');
  metrics.shardState('demo', 1, 'ready');
  let exp = (await scrape(server.port)).exp;
  assert.deepEqual(Object.keys(states(exp, '0')).sort(), [...SHARD_STATES].sort());
  assert.equal(states(exp, '0').connecting, 1);
  assert.equal(Object.values(states(exp, '0')).reduce((a, b) => a + b, 0), 1);
  assert.equal(states(exp, '1').ready, 1);

  metrics.shardState('demo', 0, 'ready');
  metrics.shardState('demo', 1, 'reconnecting');
  exp = (await scrape(server.port)).exp;
  assert.equal(states(exp, '0').connecting, 0);
  assert.equal(states(exp, '0').ready, 1);
  assert.equal(states(exp, '1').ready, 0);
  assert.equal(states(exp, '1').reconnecting, 1);
  assert.equal(Object.values(states(exp, '1')).reduce((a, b) => a + b, 0), 1);
  // without default metrics, only the runtime's own families are exposed
  assert.ok(exp.samples.every((s) => s.name.startsWith('qqbot_')));
});

test('two RuntimeMetrics in one process keep separate registries', async () => {
  const a = new RuntimeMetrics({ defaultMetrics: false });
  const b = new RuntimeMetrics({ defaultMetrics: false });
  a.eventReceived('x', 'READY', 'websocket');
  const ea = parseExposition(await a.text());
  const eb = parseExposition(await b.text());
  assert.equal(value(ea, 'qqbot_events_received_total', { bot: 'x' }), 1);
  assert.equal(eb.samples.filter((s) => s.name === 'qqbot_events_received_total').length, 0);
});

test('label values with quotes and newlines still produce parseable text', async () => {
  const metrics = new RuntimeMetrics({ defaultMetrics: false });
  metrics.pluginRestart('demo', 'we"ird\nname', 'crash');
  const exp = parseExposition(await metrics.text());
  assert.equal(value(exp, 'qqbot_plugin_restarts_total', { plugin: 'we"ird\nname' }), 1);
});

test('the metrics server answers 404 elsewhere, 405 to writes, and reports a taken port', async (t) => {
  const metrics = new RuntimeMetrics({ defaultMetrics: false });
  const server = await startMetricsServer({ port: 0, metrics });
  t.after(() => server.close());
  assert.equal((await fetch(`http://127.0.0.1:${server.port}/`)).status, 404);
  assert.equal((await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: 'POST' })).status, 405);

  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const taken = (blocker.address() as AddressInfo).port;
  await assert.rejects(startMetricsServer({ port: taken, metrics }), (err: unknown) => {
    assert.ok(err instanceof MetricsServerError);
    assert.equal(err.code, 'METRICS_LISTEN_FAILED');
    assert.equal(err.context.port, taken);
    return true;
  });
});
