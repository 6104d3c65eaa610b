/**
 * A bot on Redis sessions run as real `qqbot start` processes: a private redis-server, the simulator in
 * this process (its session list and outbox are the ground truth), guilds on every shard with several
 * channels each, a bot.yaml, and a view of the shard leases in Redis.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { startSimulator, type Simulator } from '../../runtime/simulator/index.ts';
import { startRedis, type TestRedis } from './redis-server.ts';
import { startBotProcess, type BotProcess } from './bot-process.ts';

export const APP_ID = '1020000001';
const SECRET = 'cluster-test-secret';

export interface ClusterOptions {
  shards: number;
  leaseTtlMs: number;
  identifyWindowMs: number;
  /** text channels per shard's guild (messages round-robin over them) */
  channelsPerShard?: number;
  /** plugins folder and the plugin the bot enables; default the `answer` test fixture */
  pluginsDir?: string;
  plugin?: string;
}

export interface Cluster {
  sim: Simulator;
  redis: TestRedis;
  dir: string;
  channels: string[];
  processes: BotProcess[];
  start(): BotProcess;
  /** shard → pid of the lease holder (undefined: free) */
  owners(): Promise<Array<number | undefined>>;
  /** shards held by each process still running, in start order */
  spread(): Promise<number[]>;
  /** every shard has exactly one session at the simulator, and it is connected */
  oneLiveSessionPerShard(): boolean;
  close(): Promise<void>;
}

export const guildFor = (shard: number): string => String(((1_000_000_000_000n + BigInt(shard)) << 22n) + 4242n);

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const { shards } = options;
  const redis = await startRedis();
  const sim = await startSimulator({
    bots: [{ appId: APP_ID, secret: SECRET }],
    recommendedShards: shards,
    identifyWindowMs: options.identifyWindowMs,
    sessionStartLimit: { total: 1000, maxConcurrency: 1 },
    heartbeatIntervalMs: 1_000,
    printCredentials: false,
  });
  const channels: string[] = [];
  const world = (await (await fetch(`${sim.url}/_simulator/world`)).json()) as { guilds: Array<{ id: string }> };
  for (let shard = 0; shard < shards; shard++) {
    if (!world.guilds.some((g) => g.id === guildFor(shard))) await control(sim, '/_simulator/world/guilds', { id: guildFor(shard) });
    for (let c = 0; c < (options.channelsPerShard ?? 4); c++) channels.push(((await control(sim, '/_simulator/world/channels', { guild_id: guildFor(shard) })) as { id: string }).id);
  }
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-cluster-'));
  writeFileSync(join(dir, 'bot.yaml'), [
    `pluginsDir: ${options.pluginsDir ?? fileURLToPath(new URL('../fixtures/runtime/plugins', import.meta.url))}`,
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
    `    shards: ${shards}`,
    `    sessions: { redis: "${redis.url}", leaseTtlMs: ${options.leaseTtlMs} }`,
    `    identifyWindowMs: ${options.identifyWindowMs}`,
    `    plugins: { ${options.plugin ?? 'answer'}: {} }`,
  ].join('\n'));
  const watcher = new Redis(redis.url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 100 });
  watcher.on('error', () => undefined);
  await watcher.connect();
  const processes: BotProcess[] = [];
  const owners = async (): Promise<Array<number | undefined>> => {
    const values = await watcher.mget(Array.from({ length: shards }, (_, i) => `qqbot:${APP_ID}:lock:shard:${i}`));
    return values.map((v) => (v ? Number(/:(\d+):[0-9a-f]+$/.exec(v)?.[1]) : undefined));
  };
  return {
    sim,
    redis,
    dir,
    channels,
    processes,
    start() {
      const p = startBotProcess(dir);
      processes.push(p);
      return p;
    },
    owners,
    async spread() {
      const held = await owners();
      return processes.filter((p) => p.child.exitCode === null && p.child.signalCode === null).map((p) => held.filter((pid) => pid === p.pid).length);
    },
    oneLiveSessionPerShard() {
      const sessions = sim.sessions().filter((s) => s.appId === APP_ID);
      return Array.from({ length: shards }, (_, shard) => sessions.filter((s) => s.shard[0] === shard)).every((list) => list.length === 1 && list[0]!.connected);
    },
    async close() {
      for (const p of processes) p.kill('SIGKILL');
      await Promise.all(processes.map((p) => p.exited));
      watcher.disconnect();
      await sim.close();
      await redis.stop();
    },
  };
}

async function control(sim: Simulator, path: string, body: unknown): Promise<unknown> {
  const response = await fetch(`${sim.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

export async function until(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 30_000, context: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${context()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
