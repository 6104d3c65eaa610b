/**
 * Gateway and workers apart: real `qqbot start --role gateway|worker` processes of one bot.yaml, a real
 * redis-server carrying the bot's event Stream, and the simulator in this process (its outbox is the
 * ground truth). Direct messages are posted continuously; each must be answered exactly once whatever
 * happens to the workers or to Redis.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, loadConfig, Secret } from '../runtime/config/index.ts';
import { AccessTokenSource } from '../runtime/openapi/index.ts';
import { RedisConnection } from '../runtime/sessions/redis-connection.ts';
import { RedisTokenShare } from '../runtime/sessions/redis-token-share.ts';
import { silentLogger } from '../runtime/logging/logger.ts';
import { EventStreamPublisher } from '../runtime/streams/event-stream-publisher.ts';
import { decodeDispatch, encodeDispatch } from '../runtime/streams/stream-keys.ts';
import { EventStreamConsumer } from '../runtime/streams/event-stream-consumer.ts';
import { RedisEventDedupe } from '../runtime/sessions/redis-dedupe.ts';
import { startSimulator, type Simulator } from '../runtime/simulator/index.ts';
import { metricValue, startBotProcess, type BotProcess } from './support/bot-process.ts';
import { until } from './support/cluster.ts';
import { qqbotExit } from './support/qqbot-process.ts';
import { startRedis, type TestRedis } from './support/redis-server.ts';

const APP_ID = '1020000007';
const SECRET = 'stream-test-secret';
const PLUGINS = fileURLToPath(new URL('./fixtures/streams/plugins', import.meta.url));
const STREAM = `qqbot:${APP_ID}:events`;
const MAX_DELIVERIES = 3;

interface Setup {
  sim: Simulator;
  redis: TestRedis;
  dir: string;
  watcher: Redis;
  processes: BotProcess[];
  gateway(): BotProcess;
  worker(): BotProcess;
  close(): Promise<void>;
}

/** `pluginsDir` and `plugins` (bot.yaml's section) default to the echo fixture; `redisStorage`: plugin storage in the test's Redis */
async function setup(options: { persist?: boolean; pluginsDir?: string; plugins?: string; redisStorage?: boolean } = {}): Promise<Setup> {
  const redis = await startRedis(options);
  const sim = await startSimulator({ bots: [{ appId: APP_ID, secret: SECRET }], recommendedShards: 1, identifyWindowMs: 250, heartbeatIntervalMs: 1_000, printCredentials: false });
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-streams-'));
  writeFileSync(join(dir, 'bot.yaml'), [
    `pluginsDir: ${options.pluginsDir ?? PLUGINS}`,
    `dataDir: ${join(dir, 'data')}`,
    'metrics: { port: 0 }',
    'console: { port: 0 }',
    'log: { level: info }',
    'bots:',
    '  - name: demo',
    `    appId: "${APP_ID}"`,
    `    secret: ${SECRET}`,
    `    endpoint: ${sim.url}`,
    `    tokenEndpoint: ${sim.url}/app/getAppAccessToken`,
    '    shards: 1',
    '    identifyWindowMs: 250',
    `    stream: { redis: "${redis.url}", claimIdleMs: 1000, maxDeliveries: ${MAX_DELIVERIES} }`,
    `    plugins: ${options.plugins ?? '{ echo: {} }'}`,
    ...(options.redisStorage ? [`    storage: { redis: "${redis.url}" }`] : []),
  ].join('\n'));
  const watcher = new Redis(redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 100 });
  watcher.on('error', () => undefined);
  const processes: BotProcess[] = [];
  const start = (role: string): BotProcess => {
    const p = startBotProcess(dir, 'bot.yaml', {}, ['--role', role]);
    processes.push(p);
    return p;
  };
  return {
    sim,
    redis,
    dir,
    watcher,
    processes,
    gateway: () => start('gateway'),
    worker: () => start('worker'),
    async close() {
      for (const p of processes) p.kill('SIGKILL');
      await Promise.all(processes.map((p) => p.exited));
      watcher.disconnect();
      await sim.close();
      await redis.stop();
    },
  };
}

/** Posts a direct message every few ms, over 50 users, until stopped. */
function traffic(sim: Simulator, everyMs = 5, content = (n: number) => `m${n}`): { posted: Set<string>; stop(): Promise<void> } {
  const posted = new Set<string>();
  let on = true;
  let n = 0;
  const loop = (async () => {
    while (on) {
      posted.add(sim.postMessage({ appId: APP_ID, kind: 'c2c', content: content(n), user: { id: `U${n % 50}`, username: `u${n % 50}` } }).id);
      n++;
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    posted,
    async stop() {
      on = false;
      await loop;
    },
  };
}

function answers(sim: Simulator, posted: Set<string>): Map<string, number> {
  const count = new Map<string, number>();
  for (const entry of sim.outbox()) if (entry.msg_id !== undefined && posted.has(entry.msg_id)) count.set(entry.msg_id, (count.get(entry.msg_id) ?? 0) + 1);
  return count;
}

async function metricSum(processes: BotProcess[], name: string, labels?: Record<string, string>): Promise<number> {
  const texts = await Promise.all(processes.map((p) => p.metrics()));
  return texts.reduce((n, t) => n + metricValue(t, name, labels), 0);
}

/**
 * Each message answered once, or, where a worker was killed mid-request, reported by the worker that
 * handled it again as a reply whose outcome cannot be known; never silently lost, never sent twice.
 */
async function answeredExactlyOnce(s: Setup, posted: Set<string>, live: BotProcess[]): Promise<{ answered: number; unknown: number }> {
  const unknown = () => metricSum(live, 'qqbot_replies_failed_total', { reason: 'E_REPLY_OUTCOME_UNKNOWN' });
  await until(`an answer to each of ${posted.size} messages`, async () => answers(s.sim, posted).size + await unknown() >= posted.size, 60_000, () => `answered ${answers(s.sim, posted).size}/${posted.size}\n${context(s)}`);
  await new Promise((resolve) => setTimeout(resolve, 1_500)); // room for a second answer to show up
  const count = answers(s.sim, posted);
  const twice = [...count].filter(([, n]) => n > 1).map(([id]) => id);
  assert.deepEqual(twice, [], `no message answered twice: ${JSON.stringify(s.sim.outbox().filter((e) => twice.includes(e.msg_id ?? '')))}\n${context(s)}`);
  const reported = await unknown();
  assert.ok(posted.size - count.size <= reported, `every unanswered message is reported (${posted.size - count.size} unanswered, ${reported} reported)`);
  return { answered: count.size, unknown: reported };
}

function context(s: Setup): string {
  return s.processes.map((p) => `--- pid ${p.pid}\n${p.output.stdout.split('\n').filter((l) => /stream|redis|error|warn/i.test(l)).slice(-20).join('\n')}\n${p.output.stderr.slice(-2000)}`).join('\n');
}

function gatewaySession(sim: Simulator): { sessionId: string; connected: boolean } | undefined {
  return sim.sessions().find((x) => x.appId === APP_ID);
}

test('1 gateway + 3 workers: every message answered once, spread over the workers; a worker killed -9 mid-stream → its pending entries are claimed and answered by the others', { timeout: 300_000 }, async () => {
  const s = await setup();
  try {
    const gateway = s.gateway();
    const workers = [s.worker(), s.worker(), s.worker()];
    await Promise.all([gateway, ...workers].map((p) => p.running()));
    assert.match(gateway.output.stdout, /bot demo: gateway of stream qqbot:1020000007:events/);
    const load = traffic(s.sim);
    // kill one worker once it has taken part
    await until('the third worker to ack entries', async () => metricValue(await workers[2]!.metrics(), 'qqbot_stream_acked_total') > 50, 30_000, () => context(s));
    const beforeKill = metricValue(await workers[2]!.metrics(), 'qqbot_stream_acked_total');
    workers[2]!.kill('SIGKILL');
    await workers[2]!.exited;
    // what the killed worker had read and not acked when it died
    const consumers = (await s.watcher.xinfo('CONSUMERS', STREAM, 'workers')) as unknown[][];
    const dead = consumers.map((c) => Object.fromEntries(Array.from({ length: c.length / 2 }, (_, i) => [c[2 * i], c[2 * i + 1]]))).find((c) => String(c['name']).endsWith(`:${workers[2]!.pid}`));
    const pendingAtKill = Number(dead?.['pending'] ?? 0);
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    await load.stop();
    const live = [workers[0]!, workers[1]!];
    const result = await answeredExactlyOnce(s, load.posted, live);

    const acked = await Promise.all(live.map(async (w) => metricValue(await w.metrics(), 'qqbot_stream_acked_total')));
    for (const n of acked) assert.ok(n > 0, `every live worker took a share (${acked.join(', ')})`);
    const claimed = await metricSum(live, 'qqbot_stream_claimed_total');
    // the killed worker's consumer had entries in flight: the others claimed them
    const pending = await s.watcher.xpending(STREAM, 'workers') as [number, ...unknown[]];
    assert.equal(pending[0], 0, 'nothing left pending in the group');
    const gatewayMetrics = await gateway.metrics();
    const published = metricValue(gatewayMetrics, 'qqbot_stream_published_total');
    assert.equal(published, load.posted.size, 'the gateway published every message once');
    assert.equal(metricValue(gatewayMetrics, 'qqbot_stream_dropped_total'), 0);
    assert.equal(metricValue(gatewayMetrics, 'qqbot_handler_duration_seconds_count'), 0, 'the gateway ran no plugin');
    assert.equal(await metricSum(live, 'qqbot_shards_held'), 0, 'workers hold no shard');
    assert.equal(s.sim.sessions().filter((x) => x.appId === APP_ID).length, 1, 'one platform session: the gateway\'s');
    // the console of each process shows its role and the Stream
    const state = await live[0]!.consoleState();
    assert.equal(state.bots[0].role, 'worker');
    assert.equal(state.bots[0].stream.key, STREAM);
    assert.equal((await gateway.consoleState()).bots[0].role, 'gateway');
    console.log(`# ${load.posted.size} messages: ${result.answered} answered once, ${result.unknown} reported outcome-unknown; acked by live workers ${acked.join(' / ')}, by the killed one ${beforeKill}+ before kill; ${pendingAtKill} pending at kill -9, ${claimed} entries claimed`);
    assert.ok(pendingAtKill > 0, 'the killed worker died with entries pending (else the claim path is untested)');
    assert.ok(claimed >= pendingAtKill, 'the killed worker\'s pending entries were claimed by the others');

    // it comes back and takes work again
    const again = s.worker();
    await again.running();
    const more = traffic(s.sim);
    await until('the restarted worker to ack entries', async () => metricValue(await again.metrics(), 'qqbot_stream_acked_total') > 0, 30_000, () => context(s));
    await more.stop();
    await answeredExactlyOnce(s, more.posted, [...live, again]);
  } finally {
    await s.close();
  }
});

test('redis stopped a few seconds under load: the gateway keeps its session, buffers, and delivers once redis is back; nothing answered twice', { timeout: 300_000 }, async () => {
  const s = await setup({ persist: true });
  try {
    const gateway = s.gateway();
    const workers = [s.worker(), s.worker()];
    await Promise.all([gateway, ...workers].map((p) => p.running()));
    await until('the gateway session', () => gatewaySession(s.sim)?.connected === true);
    const session = gatewaySession(s.sim)!.sessionId;
    const load = traffic(s.sim, 10);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await s.redis.stop();
    let buffered = 0;
    await until('the gateway to buffer events', async () => {
      buffered = metricValue(await gateway.metrics(), 'qqbot_stream_buffered_bytes');
      return buffered > 0;
    }, 20_000, () => context(s));
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const postedWhileDown = load.posted.size;
    await s.redis.start();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await load.stop();
    const result = await answeredExactlyOnce(s, load.posted, workers);

    const live = gatewaySession(s.sim)!;
    assert.equal(live.sessionId, session, 'the same platform session throughout');
    assert.equal(live.connected, true);
    const identifies = s.sim.sessionLog().filter((e) => e.appId === APP_ID && e.kind === 'identify' && e.outcome === 'ok').length;
    assert.equal(identifies, 1, 'the gateway never identified again');
    const g = await gateway.metrics();
    assert.equal(metricValue(g, 'qqbot_stream_dropped_total'), 0, 'nothing dropped: the buffer held');
    assert.equal(metricValue(g, 'qqbot_stream_buffered_bytes'), 0, 'the buffer is empty again');
    assert.ok(metricValue(g, 'qqbot_stream_published_total') >= load.posted.size, 'every message published');
    assert.match(gateway.output.stdout, /buffering events in memory/);
    for (const p of [gateway, ...workers]) assert.equal(p.child.exitCode, null, 'no process exited');
    console.log(`# redis down ~3 s: ${buffered} bytes buffered at first look; ${postedWhileDown} posted before redis came back, ${load.posted.size} in all: ${result.answered} answered once, ${result.unknown} reported outcome-unknown`);
  } finally {
    await s.close();
  }
});

test('a handler that throws on one event every time: that entry ends in the dead-letter stream after maxDeliveries tries, the others flow', { timeout: 300_000 }, async () => {
  const s = await setup();
  try {
    const gateway = s.gateway();
    const workers = [s.worker(), s.worker()];
    await Promise.all([gateway, ...workers].map((p) => p.running()));
    const poisonAt = 40;
    const load = traffic(s.sim, 10, (n) => (n === poisonAt ? 'poison' : `m${n}`));
    await until('the poison message to be posted', () => load.posted.size > poisonAt + 100);
    await load.stop();
    const poisonId = [...load.posted][poisonAt]!;
    const others = new Set([...load.posted].filter((id) => id !== poisonId));
    await answeredExactlyOnce(s, others, workers);
    await until('one dead letter', async () => (await s.watcher.xlen(`${STREAM}:dead`)) === 1, 30_000, () => context(s));
    const [, fields] = ((await s.watcher.xrange(`${STREAM}:dead`, '-', '+')) as Array<[string, string[]]>)[0]!;
    const entry: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) entry[fields[i]!] = fields[i + 1]!;
    assert.equal(Number(entry['deliveries']), MAX_DELIVERIES);
    assert.match(entry['error']!, /this message always fails/);
    assert.equal((JSON.parse(entry['e']!) as { d: { id: string } }).d.id, poisonId);
    assert.equal(answers(s.sim, new Set([poisonId])).size, 0, 'the poison message was never answered');
    assert.equal(await metricSum(workers, 'qqbot_stream_dead_total'), 1);
    await until('nothing pending', async () => ((await s.watcher.xpending(STREAM, 'workers')) as [number])[0] === 0);
    // the console shows the dead letter
    await until('the console to show it', async () => (await workers[0]!.consoleState()).bots[0].stream?.dead === 1);
    console.log(`# ${others.size} messages answered once; the poison entry dead-lettered after ${entry['deliveries']} deliveries`);
  } finally {
    await s.close();
  }
});

/** How many times each of `posted` was answered by one plugin (its replies start with `${prefix}: `). */
function answersOf(sim: Simulator, posted: Set<string>, prefix: string): Map<string, number> {
  const count = new Map<string, number>();
  for (const entry of sim.outbox()) {
    if (entry.msg_id === undefined || !posted.has(entry.msg_id) || !String(entry.body['content']).startsWith(`${prefix}: `)) continue;
    count.set(entry.msg_id, (count.get(entry.msg_id) ?? 0) + 1);
  }
  return count;
}

test('two plugins, one failing on an event: only the failing plugin gets it again (the other answered it once, across workers; one that answered before throwing answers again, next msg_seq); after maxDeliveries failures the dead letter names the plugin; counts balance', { timeout: 300_000 }, async () => {
  const s = await setup({ plugins: '{ answer: {}, flaky: {} }', redisStorage: true });
  try {
    const gateway = s.gateway();
    const workers = [s.worker(), s.worker()];
    await Promise.all([gateway, ...workers].map((p) => p.running()));
    const onceAt = 30;
    const twiceAt = 45;
    const neverAt = 60;
    const load = traffic(s.sim, 10, (n) => (n === onceAt ? 'once' : n === twiceAt ? 'twice' : n === neverAt ? 'never' : `m${n}`));
    await until('the failing messages to be posted', () => load.posted.size > neverAt + 60);
    await load.stop();
    const ids = [...load.posted];
    const once = ids[onceAt]!;
    const twice = ids[twiceAt]!;
    const never = ids[neverAt]!;
    const all = new Set(ids);
    const flakyAnswers = new Set(ids.filter((id) => id !== never));
    await until('flaky to answer every message but "never" (the "once" one on its retry)', () => answersOf(s.sim, flakyAnswers, 'flaky').size === flakyAnswers.size, 60_000, () => context(s));
    await until('answer to answer every message', () => answersOf(s.sim, all, 'answer').size === all.size, 60_000, () => context(s));
    await until('one dead letter', async () => (await s.watcher.xlen(`${STREAM}:dead`)) === 1, 30_000, () => context(s));
    await until('nothing pending', async () => ((await s.watcher.xpending(STREAM, 'workers')) as [number])[0] === 0, 30_000, () => context(s));
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // room for a second answer to show up

    // answer ran once on every event, the redelivered ones included; flaky once more on "once" (its retry)
    const byAnswer = answersOf(s.sim, all, 'answer');
    assert.deepEqual([...byAnswer].filter(([, n]) => n !== 1), [], 'answer answered every message exactly once');
    assert.equal(byAnswer.get(once), 1, 'answer answered "once" once over its 2 deliveries');
    assert.equal(byAnswer.get(never), 1, `answer answered "never" once over its ${MAX_DELIVERIES} deliveries`);
    const byFlaky = answersOf(s.sim, all, 'flaky');
    assert.deepEqual([...byFlaky].filter(([id, n]) => n !== 1 && id !== twice), [], 'flaky answered each message at most once, but "twice"');
    // a plugin that answered and then threw is run again: its retry answers again, with the next msg_seq
    assert.equal(byFlaky.get(twice), 2, 'flaky answered "twice" on its first run and on its retry');
    const twiceSeqs = s.sim.outbox().filter((e) => e.msg_id === twice).map((e) => e.msg_seq ?? 1).sort();
    assert.deepEqual(twiceSeqs, [1, 2, 3], '"twice": three answers, three msg_seqs');
    assert.equal(byFlaky.get(once), 1, 'flaky\'s retry of "once" answered it');
    assert.equal(byFlaky.has(never), false, 'flaky never answered "never"');
    // the retry went on from the msg_seq the first delivery took, wherever it ran
    const seqs = s.sim.outbox().filter((e) => e.msg_id === once).map((e) => e.msg_seq ?? 1).sort();
    assert.deepEqual(seqs, [1, 2], '"once" answered with msg_seq 1 (answer) and 2 (flaky\'s retry)');
    const failedRuns = await metricSum(workers, 'qqbot_handler_duration_seconds_count', { plugin: 'flaky', status: 'error' });
    assert.equal(failedRuns, 2 + MAX_DELIVERIES, `flaky failed "once" and "twice" once, "never" ${MAX_DELIVERIES} times`);
    assert.equal(await metricSum(workers, 'qqbot_handler_duration_seconds_count', { plugin: 'answer' }), all.size, 'answer ran once per message');

    const [, fields] = ((await s.watcher.xrange(`${STREAM}:dead`, '-', '+')) as Array<[string, string[]]>)[0]!;
    const entry: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) entry[fields[i]!] = fields[i + 1]!;
    assert.equal(Number(entry['deliveries']), MAX_DELIVERIES);
    assert.equal(entry['plugin'], 'flaky');
    assert.match(entry['error']!, /flaky fails this message every time/);
    assert.equal((JSON.parse(entry['e']!) as { d: { id: string } }).d.id, never);
    assert.deepEqual(await s.watcher.keys(`${STREAM}:done:*`), [], 'no record of finished plugins outlives its entry');
    assert.deepEqual(await s.watcher.keys(`${STREAM}:error:*`), [], 'no recorded error outlives its entry');

    // every delivery a worker took is handled or dropped with a reason: the posted ones, "once" and "twice" again, "never" twice again
    for (const w of workers) w.kill('SIGTERM');
    for (const w of workers) assert.equal(await w.exited, 0, w.output.stderr);
    const stopped = workers.map((w) => {
      const line = w.output.stdout.split('\n').find((l) => l.includes('"msg":"stopped"'));
      assert.ok(line, `no "stopped" log line:\n${w.output.stdout.slice(-2000)}`);
      return JSON.parse(line) as { received: number; handled: number; dropped: number; unfinished: number };
    });
    const sum = (k: 'received' | 'handled' | 'dropped' | 'unfinished') => stopped.reduce((n, x) => n + x[k], 0);
    assert.equal(sum('received'), all.size + 2 + (MAX_DELIVERIES - 1), 'each delivery received once');
    assert.equal(sum('handled') + sum('dropped') + sum('unfinished'), sum('received'), 'received = handled + dropped + unfinished');
    assert.equal(sum('dropped'), 0);
    console.log(`# ${all.size} messages, 2 plugins: answer answered each once (3 deliveries of "never", 2 of "once" and "twice"); flaky failed ${failedRuns} runs, its "once" retry answered, "twice" answered by it twice (msg_seq ${twiceSeqs.join(', ')}); dead letter names plugin ${entry['plugin']}; ${sum('received')} deliveries received = ${sum('handled')} handled + ${sum('dropped')} dropped + ${sum('unfinished')} unfinished`);
  } finally {
    await s.close();
  }
});

test('role gateway or worker without any Redis is a config error naming the line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-streams-config-'));
  const file = join(dir, 'bot.yaml');
  writeFileSync(file, ['pluginsDir: .', 'bots:', '  - name: demo', '    appId: "1"', '    secret: s', '    role: worker'].join('\n'));
  assert.throws(() => loadConfig(file, { env: {} }), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.code, 'E_CONFIG_STREAM_REDIS');
    assert.equal(error.line, 6);
    assert.equal(error.field, 'bots[0].role');
    return true;
  });
  // with sessions in Redis, the Stream goes there
  writeFileSync(file, ['pluginsDir: .', 'bots:', '  - name: demo', '    appId: "1"', '    secret: s', '    role: worker', '    sessions: { redis: "redis://127.0.0.1:1" }'].join('\n'));
  assert.equal(loadConfig(file, { env: {} }).bots[0]!.stream?.url, 'redis://127.0.0.1:1');
  // each process would start a simulator of its own
  writeFileSync(file, ['pluginsDir: .', 'bots:', '  - name: demo', '    appId: "1"', '    endpoint: simulator', '    role: gateway', '    stream: { redis: "redis://127.0.0.1:1" }'].join('\n'));
  assert.throws(() => loadConfig(file, { env: {} }), (error: unknown) => error instanceof ConfigError && error.code === 'E_CONFIG_STREAM_SIMULATOR' && error.line === 5);
    // --role on the command line: the error names the bot
  writeFileSync(file, ['pluginsDir: .', 'bots:', '  - name: demo', '    appId: "1"', '    secret: s'].join('\n'));
  const run = await qqbotExit(['start', 'bot.yaml', '--role', 'gateway'], dir);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /bot\.yaml:3:5: bots\[0\]: --role gateway applies to this bot, but needs a Redis/);
});

test('access tokens across processes: one fetch at a time, the others adopt it; a refresh after a refusal fetches once more', async () => {
  const redis = await startRedis();
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    req.resume();
    // slow enough that the sources overlap
    setTimeout(() => res.end(JSON.stringify({ access_token: `T${requests}`, expires_in: '7200' })), 50);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/app/getAppAccessToken`;
  const connections = [0, 1, 2].map((i) => new RedisConnection({ url: redis.url, name: `token-${i}` }));
  await Promise.all(connections.map((c) => c.ready()));
  const sources = connections.map((redis) => new AccessTokenSource({ appId: APP_ID, secret: new Secret('s'), tokenEndpoint: endpoint, share: new RedisTokenShare({ redis, prefix: `qqbot:${APP_ID}` }) }));
  try {
    const first = await Promise.all(sources.map((s) => s.authorization()));
    assert.deepEqual(first, ['QQBot T1', 'QQBot T1', 'QQBot T1']);
    assert.equal(requests, 1, 'one token request for three processes');
    // the platform refused T1 everywhere: each refreshes; the first fetches, the others take its token
    const refreshed = await Promise.all(sources.map((s) => s.refresh()));
    assert.deepEqual(refreshed, ['QQBot T2', 'QQBot T2', 'QQBot T2']);
    assert.equal(requests, 2);
  } finally {
    for (const s of sources) s.close();
    await Promise.all(connections.map((c) => c.close()));
    server.close();
    await redis.stop();
  }
});

test('gateway restarted (SIGTERM, start again) under load: its session resumes, no identify, every message answered once by the workers', { timeout: 300_000 }, async () => {
  const s = await setup();
  try {
    const first = s.gateway();
    const workers = [s.worker(), s.worker()];
    await Promise.all([first, ...workers].map((p) => p.running()));
    const load = traffic(s.sim, 10);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    first.kill('SIGTERM');
    assert.equal(await first.exited, 0, first.output.stderr);
    // the platform keeps pushing while no gateway listens; the workers keep draining the Stream
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const second = s.gateway();
    await second.running();
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await load.stop();
    const result = await answeredExactlyOnce(s, load.posted, workers);
    assert.equal(result.answered, load.posted.size, 'every message answered');
    const log = s.sim.sessionLog().filter((e) => e.appId === APP_ID);
    assert.equal(log.filter((e) => e.kind === 'identify' && e.outcome === 'ok').length, 1, 'identified once, by the first gateway');
    assert.equal(log.filter((e) => e.kind === 'resume' && e.outcome === 'ok').length, 1, 'the second gateway resumed');
    console.log(`# gateway restart: ${load.posted.size} messages answered once, 1 identify, 1 resume`);
  } finally {
    await s.close();
  }
});

test('publisher: while redis is away events wait in memory up to bufferBytes, the rest are dropped as buffer_full; once back the waiting ones go in, in order', async () => {
  const redis = await startRedis();
  await redis.stop();
  const connection = new RedisConnection({ url: redis.url, name: 'publisher-test' });
  const published: string[] = [];
  const dropped: Array<[string, string]> = [];
  const buffered: number[] = [];
  const event = (n: number) => ({ t: 'C2C_MESSAGE_CREATE', d: { id: `m${n}`, content: 'x'.repeat(100) }, id: `e${n}`, transport: 'websocket' as const, receivedAt: 0 });
  const size = Buffer.byteLength(JSON.stringify(event(10)));
  const publisher = new EventStreamPublisher({
    redis: connection,
    key: STREAM,
    maxLen: 1000,
    bufferBytes: size * 10,
    logger: silentLogger,
    onPublished: (d) => published.push(d.id!),
    onDropped: (d, reason) => dropped.push([d.id!, reason]),
    onBuffered: (bytes) => buffered.push(bytes),
  });
  try {
    for (let n = 10; n < 25; n++) publisher.publish(event(n));
    assert.deepEqual(published, []);
    assert.deepEqual(dropped, [['e20', 'buffer_full'], ['e21', 'buffer_full'], ['e22', 'buffer_full'], ['e23', 'buffer_full'], ['e24', 'buffer_full']]);
    assert.deepEqual(publisher.counts, { published: 0, dropped: 5, buffered: 10, bufferedBytes: size * 10 });
    await redis.start();
    await until('the buffer flushed', () => published.length === 10, 20_000);
    assert.deepEqual(published, Array.from({ length: 10 }, (_, i) => `e${10 + i}`));
    const entries = (await connection.client.xrange(STREAM, '-', '+')) as Array<[string, string[]]>;
    assert.deepEqual(entries.map(([, fields]) => decodeDispatch(fields)?.id), published, 'in the Stream in the order they came');
    assert.equal(publisher.counts.bufferedBytes, 0);
    assert.equal(buffered.at(-1), 0);
  } finally {
    await publisher.close(0);
    await connection.close();
    await redis.stop();
  }
});

/**
 * Consumers in this process on a real Redis, for races too narrow to hit reliably through processes.
 * After `hold()`, each handler runs until `releaseAll()`.
 */
async function consumers(redisUrl: string, names: string[], options: { dedupeUrl?: string; claimIdleMs?: number } = {}) {
  const connections: RedisConnection[] = [];
  const connect = async (url: string, name: string, wait = true) => {
    const c = new RedisConnection({ url, name, commandTimeoutMs: 2_000 });
    connections.push(c);
    if (wait) await c.ready();
    return c;
  };
  const handled: Array<{ consumer: string; event: string }> = [];
  const counts = { duplicates: 0, claimed: 0, acked: 0 };
  const release: Array<() => void> = [];
  let holding = false;
  const dedupeRedis = options.dedupeUrl ? await connect(options.dedupeUrl, 'dedupe', false) : undefined;
  const list: EventStreamConsumer[] = [];
  for (const name of names) {
    const redis = await connect(redisUrl, `${name}-commands`);
    const consumer = new EventStreamConsumer({
      name,
      redis,
      reader: await connect(redisUrl, `${name}-reader`),
      key: STREAM,
      deadKey: `${STREAM}:dead`,
      group: 'workers',
      claimIdleMs: options.claimIdleMs ?? 300,
      maxDeliveries: 5,
      maxLen: 1000,
      dedupe: new RedisEventDedupe({ redis: dedupeRedis ?? redis, prefix: `qqbot:${APP_ID}:stream` }),
      logger: silentLogger,
      handle: async (dispatch) => {
        handled.push({ consumer: name, event: dispatch.id! });
        if (holding) await new Promise<void>((resolve) => release.push(resolve));
        return { completed: ['p'], failures: [] };
      },
      onDuplicate: () => counts.duplicates++,
      onClaimed: (n) => (counts.claimed += n),
      onAcked: () => counts.acked++,
    });
    list.push(consumer);
  }
  return {
    list,
    handled,
    counts,
    hold: () => (holding = true),
    releaseAll: () => {
      holding = false;
      for (const r of release.splice(0)) r();
    },
    start: () => list.forEach((c) => c.start()),
    async close() {
      this.releaseAll();
      await Promise.all(list.map((c) => c.stop()));
      await Promise.all(connections.map((c) => c.close()));
    },
  };
}

const streamEvent = (id: string) => encodeDispatch({ t: 'C2C_MESSAGE_CREATE', d: { id: `m-${id}`, content: 'hi' }, id, transport: 'websocket', receivedAt: 0 });
const pendingCount = async (r: Redis) => Number(((await r.xpending(STREAM, 'workers')) as [number])[0]);

test('consumer: two entries of one event (an XADD whose answer was lost, sent again), the first delivered to a worker that vanished: taken over while the second runs, the event still runs once', async () => {
  const redis = await startRedis();
  const admin = new Redis(redis.url);
  const c = await consumers(redis.url, ['a']);
  try {
    await admin.xgroup('CREATE', STREAM, 'workers', '0', 'MKSTREAM');
    await admin.xadd(STREAM, '*', 'e', streamEvent('ev1'));
    // the vanished worker: Redis delivered the first copy to it, it never answered
    await admin.xreadgroup('GROUP', 'workers', 'ghost', 'COUNT', 1, 'STREAMS', STREAM, '>');
    await admin.xadd(STREAM, '*', 'e', streamEvent('ev1'));
    c.hold();
    c.start();
    await until('the second copy in a handler', () => c.handled.length === 1);
    await until('the first copy taken over from the vanished worker', () => c.counts.claimed === 1, 20_000);
    c.releaseAll();
    await until('both entries acknowledged', async () => (await pendingCount(admin)) === 0, 20_000);
    assert.deepEqual(c.handled, [{ consumer: 'a', event: 'ev1' }], 'the event ran once');
    assert.equal(c.counts.duplicates, 1, 'the taken-over copy was dropped as a duplicate');
    assert.equal(c.counts.acked, 2);
  } finally {
    await c.close();
    admin.disconnect();
    await redis.stop();
  }
});

test('consumer: while Redis cannot say whether an event was claimed, its entries wait; two copies then run once', async () => {
  const redis = await startRedis();
  const dedupeRedis = await startRedis();
  await dedupeRedis.stop();
  const admin = new Redis(redis.url);
  const c = await consumers(redis.url, ['a'], { dedupeUrl: dedupeRedis.url });
  try {
    await admin.xgroup('CREATE', STREAM, 'workers', '0', 'MKSTREAM');
    await admin.xadd(STREAM, '*', 'e', streamEvent('ev2'));
    await admin.xadd(STREAM, '*', 'e', streamEvent('ev2'));
    c.start();
    await until('both entries read', async () => (await pendingCount(admin)) === 2);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(c.handled, [], 'nothing runs while the claim cannot be made');
    await dedupeRedis.start();
    await until('both entries acknowledged', async () => (await pendingCount(admin)) === 0, 20_000);
    assert.equal(c.handled.length, 1, 'the event ran once');
    assert.equal(c.counts.duplicates, 1);
  } finally {
    await c.close();
    admin.disconnect();
    await redis.stop();
    await dedupeRedis.stop();
  }
});

test('consumer: Redis away longer than claimIdleMs while a handler runs: once back, the other worker does not take the live one\'s entry', async () => {
  const redis = await startRedis({ persist: true });
  const admin = new Redis(redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 100 });
  admin.on('error', () => undefined);
  const c = await consumers(redis.url, ['a', 'b']);
  try {
    await admin.xgroup('CREATE', STREAM, 'workers', '0', 'MKSTREAM');
    c.hold();
    c.start();
    await admin.xadd(STREAM, '*', 'e', streamEvent('ev3'));
    await until('the entry in a handler', () => c.handled.length === 1);
    await redis.stop();
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    await redis.start();
    await until('redis back', () => admin.status === 'ready', 20_000);
    // past the other worker's grace after the outage (claimIdleMs + 2 s for reconnects), then several of
    // its claim rounds, each past claimIdleMs of the entry's idle time had the live worker not kept it
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    assert.equal(c.counts.claimed, 0, 'nobody took over the live worker\'s entry');
    c.releaseAll();
    await until('the entry acknowledged', async () => (await pendingCount(admin)) === 0, 20_000);
    assert.equal(c.handled.length, 1, 'handled once');
  } finally {
    await c.close();
    admin.disconnect();
    await redis.stop();
  }
});

/** The echo fixture copied into a folder of its own, for a test to edit while processes run. */
function pluginsCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-streams-plugins-'));
  cpSync(join(PLUGINS, 'echo'), join(dir, 'echo'), { recursive: true });
  return dir;
}

function manifest(name: string, events: string[]): string {
  return JSON.stringify({ name, version: '1.0.0', type: 'module', main: 'index.ts', qqbot: { events, permissions: ['messages.send'] } }, null, 2);
}

/** Posts a message and waits for the one answer to it; returns the answers' texts. */
async function ask(s: Setup, kind: 'c2c' | 'group_at' | 'guild_at', content: string): Promise<string[]> {
  const { id } = s.sim.postMessage({ appId: APP_ID, kind, content });
  const replies = () => s.sim.outbox().filter((e) => e.msg_id === id).map((e) => String(e.body.content));
  await until(`an answer to the ${kind} message "${content}"`, () => replies().length > 0, 30_000, () => context(s));
  return replies();
}

function identifies(sim: Simulator): number[] {
  return sim.sessionLog().filter((e) => e.appId === APP_ID && e.kind === 'identify' && e.outcome === 'ok').map((e) => e.intents!);
}

function lines(p: BotProcess, text: RegExp): number {
  return p.output.stdout.split('\n').filter((line) => text.test(line)).length;
}

const PUBLIC_GUILD_MESSAGES = 1 << 30;
const DIRECT_MESSAGE = 1 << 12;
const GROUP_AND_C2C_EVENT = 1 << 25;

test('a gateway follows its plugins\' manifests: one that starts subscribing to group @-messages makes it identify again with that intent and the worker answers them; an unreadable manifest keeps the intents it had', { timeout: 300_000 }, async () => {
  const pluginsDir = pluginsCopy();
  const echo = join(pluginsDir, 'echo');
  writeFileSync(join(echo, 'package.json'), manifest('echo', ['AT_MESSAGE_CREATE']));
  writeFileSync(join(echo, 'index.ts'), [
    "export default function setup(ctx: any) {",
    "  for (const type of ['AT_MESSAGE_CREATE', 'GROUP_AT_MESSAGE_CREATE']) ctx.on(type, (event: any) => event.reply(`echo: ${type}`));",
    '}',
  ].join('\n'));
  // a second plugin, so that losing echo's events would change the intents rather than empty them
  cpSync(echo, join(pluginsDir, 'dm'), { recursive: true });
  writeFileSync(join(pluginsDir, 'dm', 'package.json'), manifest('dm', ['DIRECT_MESSAGE_CREATE']));
  writeFileSync(join(pluginsDir, 'dm', 'index.ts'), 'export default function setup(ctx: any) {\n  ctx.on(\'DIRECT_MESSAGE_CREATE\', () => undefined);\n}\n');
  const s = await setup({ pluginsDir, plugins: '{ echo: {}, dm: {} }' });
  try {
    const gateway = s.gateway();
    const worker = s.worker();
    await Promise.all([gateway, worker].map((p) => p.running()));
    assert.deepEqual(identifies(s.sim), [PUBLIC_GUILD_MESSAGES | DIRECT_MESSAGE]);
    assert.deepEqual(await ask(s, 'guild_at', 'one'), ['echo: AT_MESSAGE_CREATE']);

    // the manifest widens: the worker reloads echo, the gateway identifies again with the group bit
    writeFileSync(join(echo, 'package.json'), manifest('echo', ['AT_MESSAGE_CREATE', 'GROUP_AT_MESSAGE_CREATE']));
    await until('the gateway to identify again', () => identifies(s.sim).length === 2, 30_000, () => context(s));
    await until('the worker to run echo v2', () => /echo v2 live/.test(worker.output.stdout), 30_000, () => context(s));
    assert.deepEqual(identifies(s.sim), [PUBLIC_GUILD_MESSAGES | DIRECT_MESSAGE, PUBLIC_GUILD_MESSAGES | DIRECT_MESSAGE | GROUP_AND_C2C_EVENT]);
    assert.equal(lines(gateway, /plugin events changed the intents/), 1, 'the gateway says once that its intents changed');
    assert.deepEqual(await ask(s, 'group_at', 'two'), ['echo: GROUP_AT_MESSAGE_CREATE'], 'a group @-message reaches the worker through the gateway');

    // a manifest that cannot be read: logged with the plugin and the file, echo's last good events kept
    writeFileSync(join(echo, 'package.json'), '{ "name": "echo", ');
    await until('the gateway to report the manifest', () => lines(gateway, /plugin manifest not read/) > 0, 30_000, () => context(s));
    const report = gateway.output.stdout.split('\n').find((line) => /plugin manifest not read/.test(line))!;
    assert.match(report, /echo/);
    assert.ok(report.includes(join('echo', 'package.json')), `the report names the file: ${report}`);
    // then a good one that narrows: the next identify has exactly echo's new events and dm's
    writeFileSync(join(echo, 'package.json'), manifest('echo', ['AT_MESSAGE_CREATE']));
    await until('the gateway to identify a third time', () => identifies(s.sim).length >= 3, 30_000, () => context(s));
    assert.deepEqual(identifies(s.sim), [PUBLIC_GUILD_MESSAGES | DIRECT_MESSAGE, PUBLIC_GUILD_MESSAGES | DIRECT_MESSAGE | GROUP_AND_C2C_EVENT, PUBLIC_GUILD_MESSAGES | DIRECT_MESSAGE], 'the unreadable manifest changed nothing');
    assert.equal(lines(gateway, /plugin events changed the intents/), 2);
    assert.equal(metricValue(await gateway.metrics(), 'qqbot_handler_duration_seconds_count'), 0, 'the gateway ran no plugin');
    for (const p of [gateway, worker]) assert.equal(p.child.exitCode, null);
  } finally {
    await s.close();
  }
});

test('a worker reloads its plugins on save: the echo plugin saved with another reply text answers with it, and the gateway keeps its session', { timeout: 300_000 }, async () => {
  const pluginsDir = pluginsCopy();
  const source = join(pluginsDir, 'echo', 'index.ts');
  const s = await setup({ pluginsDir });
  try {
    const gateway = s.gateway();
    const worker = s.worker();
    await Promise.all([gateway, worker].map((p) => p.running()));
    assert.deepEqual(await ask(s, 'c2c', 'before'), ['echo: before']);
    writeFileSync(source, readFileSync(source, 'utf8').replace('`echo: ', '`echo v2: '));
    await until('the worker to run echo v2', () => /echo v2 live/.test(worker.output.stdout), 30_000, () => context(s));
    assert.deepEqual(await ask(s, 'c2c', 'after'), ['echo v2: after']);
    assert.equal(identifies(s.sim).length, 1, 'a code change does not touch the gateway\'s session');
    assert.equal(lines(gateway, /plugin events changed the intents/), 0);
  } finally {
    await s.close();
  }
});
