/**
 * Redis sessions with real processes (`qqbot start`, a private redis-server, the simulator in this
 * process): how long shards stay unserved after a process is killed, and how event throughput changes
 * when the bot's 12 shards are spread over 3 processes instead of held by 1.
 */
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { metricValue } from '../test/support/bot-process.ts';
import { APP_ID, startCluster, until, type Cluster } from '../test/support/cluster.ts';
import { percentile, withRatio, type BenchRow } from './rows.ts';

const SHARDS = 12;
const LEASE_TTL_MS = 3_000;
const KILLS = 5;
const EVENTS = 6_000;

async function spreadIs(c: Cluster, expected: string): Promise<boolean> {
  return (await c.spread()).join() === expected && c.oneLiveSessionPerShard();
}

/** From kill -9 until every shard the killed process held is connected again, in another process. */
async function takeoverTimes(): Promise<number[]> {
  const c = await startCluster({ shards: SHARDS, leaseTtlMs: LEASE_TTL_MS, identifyWindowMs: 250 });
  const times: number[] = [];
  try {
    await Promise.all([c.start(), c.start(), c.start()].map((p) => p.running()));
    await until('4/4/4', () => spreadIs(c, '4,4,4'), 90_000);
    for (let kill = 0; kill < KILLS; kill++) {
      const running = c.processes.filter((p) => p.child.exitCode === null && p.child.signalCode === null);
      const victim = running[kill % running.length]!;
      const owners = await c.owners();
      const held = owners.flatMap((pid, shard) => (pid === victim.pid ? [shard] : []));
      const sessions = () => c.sim.sessions().filter((s) => s.appId === APP_ID && held.includes(s.shard[0]));
      const killedAt = performance.now();
      victim.kill('SIGKILL');
      await victim.exited;
      await until('the killed process\'s shards served elsewhere', async () => {
        const now = await c.owners();
        return held.every((shard) => now[shard] !== undefined && now[shard] !== victim.pid) && sessions().length === held.length && sessions().every((s) => s.connected);
      }, 60_000);
      times.push(performance.now() - killedAt);
      c.start();
      await until('4/4/4 again', () => spreadIs(c, '4,4,4'), 90_000);
    }
  } finally {
    await c.close();
  }
  return times;
}

/** A plugin that only takes the event: the figure is the runtime's, not a reply rate limit's. */
async function sinkPlugins(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'qqbot-bench-sessions-'));
  await mkdir(join(dir, 'sink'));
  await writeFile(join(dir, 'sink', 'package.json'), JSON.stringify({ name: 'sink', version: '1.0.0', type: 'module', main: 'index.ts', qqbot: { events: ['AT_MESSAGE_CREATE'], permissions: [] } }));
  await writeFile(join(dir, 'sink', 'index.ts'), "export default function setup(ctx: any) {\n  ctx.on('AT_MESSAGE_CREATE', () => undefined);\n}\n");
  return dir;
}

/** Events handled per second by `processes` processes of one bot (12 shards), posted as fast as the simulator takes them. */
async function throughput(processes: number, pluginsDir: string): Promise<number> {
  const c = await startCluster({ shards: SHARDS, leaseTtlMs: LEASE_TTL_MS, identifyWindowMs: 250, channelsPerShard: 8, pluginsDir, plugin: 'sink' });
  try {
    const started = Array.from({ length: processes }, () => c.start());
    await Promise.all(started.map((p) => p.running()));
    const share = Array.from({ length: processes }, () => SHARDS / processes).join();
    await until(`${share}`, () => spreadIs(c, share), 90_000);
    const handled = async (): Promise<number> => {
      const texts = await Promise.all(started.map((p) => p.metrics()));
      return texts.reduce((n, t) => n + metricValue(t, 'qqbot_handler_duration_seconds_count', { plugin: 'sink' }), 0);
    };
    const before = await handled();
    const t0 = performance.now();
    for (let n = 0; n < EVENTS; n++) {
      c.sim.postMessage({ kind: 'guild_at', content: `b${n}`, channel_id: c.channels[n % c.channels.length]! });
      // let the simulator's sockets drain now and then
      if (n % 200 === 199) await new Promise((resolve) => setImmediate(resolve));
    }
    await until(`${EVENTS} events handled`, async () => (await handled()) - before >= EVENTS, 300_000);
    return EVENTS / ((performance.now() - t0) / 1000);
  } finally {
    await c.close();
  }
}

export async function benchSessions(): Promise<BenchRow[]> {
  const times = (await takeoverTimes()).sort((a, b) => a - b);
  const pluginsDir = await sinkPlugins();
  const one = await throughput(1, pluginsDir);
  const three = await throughput(3, pluginsDir);
  return [
    withRatio({ name: `takeover time after kill -9 (p50 over ${KILLS} kills; baseline: lease TTL)`, value: percentile(times, 50), unit: 'ms', baseline: LEASE_TTL_MS }),
    { name: `takeover time after kill -9 (max over ${KILLS} kills)`, value: times.at(-1)!, unit: 'ms' },
    withRatio({ name: `events/s with 3 processes vs 1 (${SHARDS} shards, ${EVENTS} events; baseline: 1 process)`, value: three, unit: 'events/s', baseline: one }),
  ];
}
