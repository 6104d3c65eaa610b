/**
 * Hot reload: save-to-live latency (a file write until the new version's first reply reaches the
 * simulator, with probe messages flowing all the time) and memory after many reloads against the
 * memory after the first (old isolates must really be disposed). A real Runtime on a temp project.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadConfig } from '../runtime/config/index.ts';
import { createLogger } from '../runtime/logging/logger.ts';
import type { ReloadCoordinator, ReloadResult } from '../runtime/bot/reload-coordinator.ts';
import { Runtime } from '../runtime/runtime.ts';
import type { OutboxEntry } from '../runtime/simulator/index.ts';
import { percentile, withRatio, type BenchRow } from './rows.ts';

const APP_ID = '1020000001';
const SAVES = 50;
const RELOADS = 200;
// under the 100 sends/s a plugin instance is allowed
const PROBE_EVERY_MS = 12;

function echoSource(marker: string): string {
  return `export default function setup(ctx: any) {\n  ctx.on('AT_MESSAGE_CREATE', async (event: any) => {\n    await event.reply({ content: ${JSON.stringify(`${marker}:`)} + event.data.id });\n  });\n}\n`;
}

async function hostRssMb(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  return kb === undefined ? Number.NaN : Number(kb) / 1024;
}

function nextReload(reloader: ReloadCoordinator): Promise<ReloadResult> {
  return new Promise((resolve) => reloader.once('reload', resolve));
}

// heap figures without a collection measure the collector's timing, not retention
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

async function memory(runtime: Runtime): Promise<{ rss: number; heap: number; host: number }> {
  // let retired isolates drain and be disposed, and give both heaps a chance to shrink
  await new Promise((resolve) => setTimeout(resolve, 1000));
  collectGarbage();
  const usage = process.memoryUsage();
  return { rss: usage.rss / 2 ** 20, heap: usage.heapUsed / 2 ** 20, host: await hostRssMb(runtime.supervisor.hostPid) };
}

export async function benchHotReload(): Promise<BenchRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'qqbot-bench-reload-'));
  const file = join(dir, 'plugins', 'echo', 'index.ts');
  await mkdir(join(dir, 'plugins', 'echo'), { recursive: true });
  await writeFile(file, echoSource('v1'));
  await writeFile(join(dir, 'plugins', 'echo', 'package.json'), JSON.stringify({ name: 'echo', version: '1.0.0', main: 'index.ts', qqbot: { events: ['AT_MESSAGE_CREATE'], permissions: ['messages.send'] } }));
  await writeFile(join(dir, 'bot.yaml'), `pluginsDir: ./plugins\nbots:\n  - name: demo\n    appId: "${APP_ID}"\n    endpoint: simulator\n`);
  const runtime = new Runtime({ config: loadConfig(join(dir, 'bot.yaml')), logger: createLogger({ level: 'silent' }), console: false, metricsServer: false });
  let probe: NodeJS.Timeout | undefined;
  try {
    await runtime.start();
    const sim = runtime.simulator!;
    const reloader = runtime.reloader!;
    let version = 1;

    // save-to-live: probes keep flowing; live = the first reply carrying the new marker
    const latencies: number[] = [];
    const buildSwap: number[] = [];
    // spread over 50 channels: the platform takes at most 5 messages per second into one channel
    let probes = 0;
    probe = setInterval(() => sim.postMessage({ appId: APP_ID, kind: 'guild_at', content: 'probe', guild_id: String(7_200_000_000 + (probes++ % 50)) }), PROBE_EVERY_MS);
    for (let i = 0; i < SAVES; i++) {
      const marker = `v${++version}:`;
      const live = new Promise<number>((resolve) => {
        const onReply = (entry: OutboxEntry) => {
          if (!String(entry.body.content).startsWith(marker)) return;
          sim.off('outbox', onReply);
          resolve(performance.now());
        };
        sim.on('outbox', onReply);
      });
      const reloaded = nextReload(reloader);
      const written = performance.now();
      await writeFile(file, echoSource(`v${version}`));
      latencies.push((await live) - written);
      const result = await reloaded;
      if (!result.ok) throw new Error(`reload failed: ${result.error?.message}`);
      buildSwap.push(result.ms);
    }
    clearInterval(probe);
    latencies.sort((a, b) => a - b);
    buildSwap.sort((a, b) => a - b);

    // memory: after one more reload vs after RELOADS more
    const first = nextReload(reloader);
    await writeFile(file, echoSource(`v${++version}`));
    await first;
    const start = await memory(runtime);
    for (let i = 0; i < RELOADS; i++) {
      const done = nextReload(reloader);
      await writeFile(file, echoSource(`v${++version}`));
      const result = await done;
      if (!result.ok) throw new Error(`reload failed: ${result.error?.message}`);
    }
    const end = await memory(runtime);

    return [
      { name: `save-to-live latency p50 (${SAVES} saves, 100 ms debounce, ${Math.round(1000 / PROBE_EVERY_MS)} ev/s)`, value: percentile(latencies, 50), unit: 'ms' },
      { name: 'save-to-live latency p95', value: percentile(latencies, 95), unit: 'ms' },
      { name: 'of which build + setup + swap p50', value: percentile(buildSwap, 50), unit: 'ms' },
      { name: 'of which build + setup + swap p95', value: percentile(buildSwap, 95), unit: 'ms' },
      withRatio({ name: `main process RSS after ${RELOADS} reloads (baseline: after 1)`, value: end.rss, unit: 'MB', baseline: start.rss }),
      withRatio({ name: `main process heap used after ${RELOADS} reloads (baseline: after 1)`, value: end.heap, unit: 'MB', baseline: start.heap }),
      withRatio({ name: `plugin host RSS after ${RELOADS} reloads (baseline: after 1)`, value: end.host, unit: 'MB', baseline: start.host }),
    ];
  } finally {
    clearInterval(probe);
    await runtime.stop({ drainMs: 2000 });
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.table(await benchHotReload());
}
