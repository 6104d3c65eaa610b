/**
 * Gateway and workers apart (real `qqbot start --role …` processes, a private redis-server, the simulator
 * in this process): what the Redis Stream between them costs against one `--role all` process, same run,
 * and how throughput changes with 1, 2 and 3 workers behind one gateway. Per subject: 100 C2C messages one
 * at a time (latency, platform receipt to reply) and a burst over 1,000 users (replies/s).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSimulator, type Simulator } from '../runtime/simulator/index.ts';
import { startBotProcess, type BotProcess } from '../test/support/bot-process.ts';
import { until } from '../test/support/cluster.ts';
import { startRedis } from '../test/support/redis-server.ts';
import { percentile, withRatio, type BenchRow } from './rows.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const APP_ID = '1020000009';
const SECRET = 'stream-bench-secret';
const BURST = 3000;
const USERS = 1000;
const ONE_AT_A_TIME = 100;

interface Result {
  answered: number;
  repliesPerSecond: number;
  unloadedP50: number;
  burstP50: number;
}

/** Replies to `ids` in the outbox after entry `since`, once each: count, latencies, when the last came. */
function replies(sim: Simulator, ids: Set<string>, since: number): { answered: number; latencies: number[]; lastAt: number } {
  const seen = new Set<string>();
  const latencies: number[] = [];
  let lastAt = 0;
  for (const e of sim.outbox(since)) {
    if (!e.msg_id || !ids.has(e.msg_id) || seen.has(e.msg_id)) continue;
    seen.add(e.msg_id);
    if (e.latencyMs !== undefined) latencies.push(e.latencyMs);
    lastAt = Math.max(lastAt, Date.parse(e.at));
  }
  return { answered: seen.size, latencies: latencies.sort((a, b) => a - b), lastAt };
}

async function measure(sim: Simulator, round: number): Promise<Result> {
  // polled every few ms beside the simulator it measures: only the outbox entries since the phase began
  let last = 0;
  const mark = () => (last = sim.outbox(last).at(-1)?.n ?? last);
  const post = (i: number, what: string) => sim.postMessage({ appId: APP_ID, kind: 'c2c', content: `${what} r${round} ${i}`, user: { id: `R${round}U${i % USERS}`, username: 'u' } }).id;
  let since = mark();
  const warm = new Set(Array.from({ length: 100 }, (_, i) => post(i, 'warm')));
  await until('warm-up answered', () => replies(sim, warm, since).answered === warm.size, 60_000);

  const unloaded: number[] = [];
  for (let i = 0; i < ONE_AT_A_TIME; i++) {
    since = mark();
    const one = new Set([post(i, 'one')]);
    await until('one answered', () => replies(sim, one, since).answered === 1, 10_000);
    unloaded.push(replies(sim, one, since).latencies[0]!);
  }
  unloaded.sort((a, b) => a - b);

  since = mark();
  const started = Date.now();
  const burst = new Set(Array.from({ length: BURST }, (_, i) => post(i, 'burst')));
  await until('the burst answered', () => replies(sim, burst, since).answered === burst.size, 120_000).catch(() => undefined);
  const result = replies(sim, burst, since);
  return {
    answered: result.answered,
    repliesPerSecond: result.answered / (Math.max(1, result.lastAt - started) / 1000),
    unloadedP50: percentile(unloaded, 50),
    burstP50: percentile(result.latencies, 50),
  };
}

export async function benchStreamPath(): Promise<BenchRow[]> {
  const redis = await startRedis();
  const sim = await startSimulator({ bots: [{ appId: APP_ID, secret: SECRET }], recommendedShards: 1, identifyWindowMs: 250, printCredentials: false });
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-bench-stream-'));
  writeFileSync(join(dir, 'bot.yaml'), [
    `pluginsDir: ${JSON.stringify(join(ROOT, 'plugins'))}`,
    `dataDir: ${JSON.stringify(join(dir, 'data'))}`,
    'log: { level: warn }',
    'bots:',
    `  - { name: bench, appId: "${APP_ID}", secret: ${SECRET}, endpoint: "${sim.url}", tokenEndpoint: "${sim.url}/app/getAppAccessToken", shards: 1, identifyWindowMs: 250, stream: { redis: "${redis.url}" }, plugins: { echo: {} } }`,
  ].join('\n'));
  let round = 0;
  const run = async (workers: number): Promise<Result> => {
    const processes: BotProcess[] = workers === 0
      ? [startBotProcess(dir, 'bot.yaml', {}, ['--role', 'all'])]
      : [startBotProcess(dir, 'bot.yaml', {}, ['--role', 'gateway']), ...Array.from({ length: workers }, () => startBotProcess(dir, 'bot.yaml', {}, ['--role', 'worker']))];
    try {
      await Promise.all(processes.map((p) => p.running()));
      await until('a session', () => sim.sessions().some((s) => s.appId === APP_ID && s.connected), 60_000);
      const result = await measure(sim, round++);
      // a shortfall is said with what the processes logged about it
      if (result.answered < BURST) for (const p of processes) process.stderr.write(p.output.stdout.split('\n').filter((l) => /"level":(40|50)/.test(l)).slice(0, 20).join('\n'));
      return result;
    } finally {
      for (const p of processes) p.kill('SIGTERM');
      await Promise.all(processes.map((p) => p.exited));
    }
  };
  try {
    const all = await run(0);
    const streams = [await run(1), await run(2), await run(3)];
    const rows: BenchRow[] = [
      { name: `--role all: ${BURST} C2C burst, replies/s`, value: all.repliesPerSecond, unit: 'replies/s' },
      { name: `--role all: ${ONE_AT_A_TIME} one at a time, latency p50`, value: all.unloadedP50, unit: 'ms' },
    ];
    for (const [i, r] of streams.entries()) {
      const label = `gateway + ${i + 1} worker${i === 0 ? '' : 's'}`;
      rows.push(withRatio({ name: `${label}: ${BURST} C2C burst, answered (of ${BURST})`, value: r.answered, unit: 'replies', baseline: all.answered }));
      rows.push(withRatio({ name: `${label}: ${BURST} C2C burst, replies/s`, value: r.repliesPerSecond, unit: 'replies/s', baseline: all.repliesPerSecond }));
      rows.push(withRatio({ name: `${label}: ${BURST} C2C burst, latency p50`, value: r.burstP50, unit: 'ms', baseline: all.burstP50 }));
      rows.push(withRatio({ name: `${label}: ${ONE_AT_A_TIME} one at a time, latency p50`, value: r.unloadedP50, unit: 'ms', baseline: all.unloadedP50 }));
    }
    rows.push({ name: `added p50 latency through the Stream (1 worker, one at a time)`, value: streams[0]!.unloadedP50 - all.unloadedP50, unit: 'ms' });
    return rows;
  } finally {
    await sim.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.table(await benchStreamPath());
  process.exit(0);
}
