/**
 * End to end: the simulator (its own process) pushes AT_MESSAGE_CREATE over one shard to
 * `qqbot start` with the echo plugin (main process + plugin host), and counts every reply it gets.
 * Baseline, same simulator, same run: a bare `ws` + `JSON.parse` + undici client (bare-client.ts).
 * Measured per subject: a burst of 5,000 spread over 1,000 channels (5 each: within the platform's
 * per-channel rate), and 200 messages one at a time.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { spawnNode, treeCpuMs, type Spawned } from './processes.ts';
import { percentile, withRatio, type BenchRow } from './rows.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const APP_ID = '1020000001';
const SECRET = 'simulator-secret';
const BURST = 5000;
const CHANNELS = 1000;
const ONE_AT_A_TIME = 200;
const STALL_MS = 10_000;

interface Reply { msg_id?: string; latencyMs?: number; at: string; n: number }

class SimulatorControl {
  readonly url: string;
  #since = 0;

  constructor(url: string) {
    this.url = url;
  }

  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const res = await request(`${this.url}/_simulator${path}`, {
      method, headers: { 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return (await res.body.json()) as T;
  }

  /** Outbox entries since the last call. */
  async replies(): Promise<Reply[]> {
    const entries = await this.call<Reply[]>('GET', `/outbox?since=${this.#since}`);
    if (entries.length > 0) this.#since = entries.at(-1)!.n;
    return entries;
  }
}

interface SubjectResult {
  answered: number;
  duplicated: number;
  repliesPerSecond: number;
  burstP50: number;
  burstP99: number;
  unloadedP50: number;
  unloadedP99: number;
  cpuMsPerEvent: number;
}

/** Waits until every id has a reply (or `timeoutMs`), gathering latencies; returns when the last came. */
async function collect(sim: SimulatorControl, ids: string[], timeoutMs: number): Promise<{ latencies: number[]; duplicated: number; lastAt: number }> {
  const wanted = new Set(ids);
  const seen = new Map<string, number>();
  const latencies: number[] = [];
  let lastAt = 0;
  const deadline = Date.now() + timeoutMs;
  let progressAt = Date.now();
  // the runtime under test may lose replies: stop waiting once none came for a while
  while (seen.size < wanted.size && Date.now() < deadline && Date.now() - progressAt < STALL_MS) {
    const entries = await sim.replies();
    if (entries.length > 0) progressAt = Date.now();
    for (const e of entries) {
      if (!e.msg_id || !wanted.has(e.msg_id)) continue;
      seen.set(e.msg_id, (seen.get(e.msg_id) ?? 0) + 1);
      if (e.latencyMs !== undefined) latencies.push(e.latencyMs);
      lastAt = Math.max(lastAt, Date.parse(e.at));
    }
    if (seen.size < wanted.size) await new Promise((resolve) => setTimeout(resolve, ids.length === 1 ? 1 : 50));
  }
  let duplicated = 0;
  for (const n of seen.values()) duplicated += n - 1;
  return { latencies: latencies.sort((a, b) => a - b), duplicated, lastAt };
}

async function measure(sim: SimulatorControl, subject: Spawned, round: number): Promise<SubjectResult> {
  // guild ids are per round: the per-channel rate window of an earlier round must not carry over
  const guildBase = 8_000_000_000 + round * 100_000;
  // warm up (JIT, connection pool), then let the channels' rate windows pass
  const warm = await Promise.all(Array.from({ length: 100 }, (_, i) => sim.call<{ id: string }>('POST', '/messages', { kind: 'guild_at', content: `warm ${i}`, guild_id: String(guildBase + 50_000 + i) })));
  await collect(sim, warm.map((w) => w.id), 30_000);

  const unloaded: number[] = [];
  for (let i = 0; i < ONE_AT_A_TIME; i++) {
    const { id } = await sim.call<{ id: string }>('POST', '/messages', { kind: 'guild_at', content: `one ${i}`, guild_id: String(guildBase + 60_000 + i) });
    const { latencies } = await collect(sim, [id], 10_000);
    if (latencies[0] !== undefined) unloaded.push(latencies[0]);
  }
  unloaded.sort((a, b) => a - b);
  await sim.replies();

  const pid = subject.child.pid!;
  const cpuBefore = treeCpuMs(pid);
  const started = Date.now();
  const { ids } = await sim.call<{ ids: string[] }>('POST', '/messages/burst', { kind: 'guild_at', count: BURST, targets: CHANNELS, content: `burst r${round}` });
  const burst = await collect(sim, ids, 120_000);
  const cpuAfter = treeCpuMs(pid);
  const answered = burst.latencies.length;
  return {
    answered,
    duplicated: burst.duplicated,
    repliesPerSecond: answered / (Math.max(1, burst.lastAt - started) / 1000),
    burstP50: percentile(burst.latencies, 50),
    burstP99: percentile(burst.latencies, 99),
    unloadedP50: percentile(unloaded, 50),
    unloadedP99: percentile(unloaded, 99),
    cpuMsPerEvent: (cpuAfter - cpuBefore) / BURST,
  };
}

async function waitForSession(sim: SimulatorControl): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const sessions = await sim.call<Array<{ connected: boolean }>>('GET', '/sessions');
    if (sessions.some((s) => s.connected)) return;
    if (Date.now() > deadline) throw new Error('no session connected to the simulator');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function runSubject(sim: SimulatorControl, start: () => Promise<Spawned>, round: number): Promise<SubjectResult> {
  const subject = await start();
  try {
    await waitForSession(sim);
    return await measure(sim, subject, round);
  } finally {
    await subject.stop();
    // the next subject identifies afresh; the simulator allows one identify per 5 s window
    await new Promise((resolve) => setTimeout(resolve, 5500));
  }
}

export async function benchEventPath(): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-bench-'));
  const simulator = await spawnNode([join(ROOT, 'bin/qqbot.js'), 'simulator', '--port', '0'], /OpenAPI (http:\/\/\S+)/);
  try {
    const url = simulator.match[1]!;
    const sim = new SimulatorControl(url);
    const yaml = [
      `pluginsDir: ${JSON.stringify(join(ROOT, 'plugins'))}`,
      `dataDir: ${JSON.stringify(join(dir, 'data'))}`,
      'log: { level: warn }',
      'bots:',
      `  - { name: bench, appId: "${APP_ID}", secret: ${SECRET}, endpoint: "${url}", tokenEndpoint: "${url}/app/getAppAccessToken", shards: 1, plugins: { echo: {} } }`,
    ].join('\n');
    writeFileSync(join(dir, 'bot.yaml'), `${yaml}\n`);

    const bare = await runSubject(sim, () => spawnNode([join(ROOT, 'bench/bare-client.ts'), url, APP_ID, SECRET], /bare client ready/), 0);
    const runtime = await runSubject(sim, () => spawnNode([join(ROOT, 'bin/qqbot.js'), 'start', join(dir, 'bot.yaml')], /bots running/, { cwd: dir }), 1);

    const label = `${BURST} AT_MESSAGE_CREATE over ${CHANNELS} channels`;
    return [
      withRatio({ name: `${label}: answered (of ${BURST})`, value: runtime.answered, unit: 'replies', baseline: bare.answered }),
      withRatio({ name: `${label}: answered twice`, value: runtime.duplicated, unit: 'replies', baseline: bare.duplicated }),
      withRatio({ name: `${label}: replies/s`, value: runtime.repliesPerSecond, unit: 'replies/s', baseline: bare.repliesPerSecond }),
      withRatio({ name: `${label}: latency p50`, value: runtime.burstP50, unit: 'ms', baseline: bare.burstP50 }),
      withRatio({ name: `${label}: latency p99`, value: runtime.burstP99, unit: 'ms', baseline: bare.burstP99 }),
      withRatio({ name: `${label}: CPU per event, all processes`, value: runtime.cpuMsPerEvent, unit: 'ms', baseline: bare.cpuMsPerEvent }),
      withRatio({ name: `${ONE_AT_A_TIME} one at a time: latency p50`, value: runtime.unloadedP50, unit: 'ms', baseline: bare.unloadedP50 }),
      withRatio({ name: `${ONE_AT_A_TIME} one at a time: latency p99`, value: runtime.unloadedP99, unit: 'ms', baseline: bare.unloadedP99 }),
    ];
  } finally {
    await simulator.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.table(await benchEventPath());
}
