/**
 * Sandbox cost: events/s and handler latency through a sandboxed echo plugin (main process → IPC
 * → plugin host → isolate → capability call back → settle) against the same bundled handler
 * called directly in this process with the same capability function; and RSS per idle isolate.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { bundlePlugin } from '../runtime/plugins/bundler.ts';
import { DEFAULT_LIMITS, type CallResult, type PluginInstanceSpec, type SandboxEvent } from '../runtime/plugins/instance.ts';
import { PluginSupervisor } from '../runtime/plugins/sandbox/supervisor.ts';
import { percentile, withRatio, type BenchRow } from './rows.ts';

const ECHO = fileURLToPath(new URL('../test/fixtures/runtime/plugins/alpha/index.ts', import.meta.url));
const BURNER = fileURLToPath(new URL('./fixtures/burner.ts', import.meta.url));
const FAN_OUT = 10;
const ONE_AT_A_TIME = 1000;
const EVENTS = 5000;
const IN_FLIGHT = 64;
const IDLE_ISOLATES = 50;

let replies = 0;
async function onCall(_instance: string, capability: string, payload: unknown): Promise<CallResult> {
  if (capability === 'reply') {
    replies += 1;
    void (payload as { body: unknown }).body;
    return { ok: true, value: { id: `r${replies}`, timestamp: 0 } };
  }
  return { ok: false, error: { code: 'E_UNKNOWN_CAPABILITY', message: capability } };
}

function event(i: number): SandboxEvent {
  return {
    ref: `ref-${i}`,
    type: 'C2C_MESSAGE_CREATE',
    id: `evt-${i}`,
    transport: 'websocket',
    data: { id: `msg-${i}`, content: `hello ${i}`, timestamp: '2026-11-27T00:00:00+08:00', author: { user_openid: 'U1' } },
  };
}

/** Runs `count` events with `inFlight` outstanding; returns per-event latencies (ms) and events/s. */
async function drive(handle: (e: SandboxEvent) => Promise<unknown>, inFlight: number, count = EVENTS): Promise<{ latencies: number[]; perSecond: number }> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < count) {
      const e = event(next++);
      const t0 = performance.now();
      await handle(e);
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const seconds = (performance.now() - started) / 1000;
  return { latencies: latencies.sort((a, b) => a - b), perSecond: count / seconds };
}

function spec(id: string, bundle: { code: string; sourceMap: string; filename: string }): PluginInstanceSpec {
  return {
    id, plugin: 'alpha', bot: { name: 'bench', appId: '1' }, version: 1,
    code: bundle.code, sourceMap: bundle.sourceMap, filename: bundle.filename,
    config: {}, permissions: ['messages.send'], events: ['C2C_MESSAGE_CREATE'], limits: DEFAULT_LIMITS,
  };
}

/** One event to several instances, as the dispatcher hands it over (one JSON for all of them). */
function fanOut(supervisor: PluginSupervisor, e: SandboxEvent, ids: string[]): Array<Promise<unknown>> {
  // `deliver` came with the batched boundary; before it, every instance was dispatched on its own
  const s = supervisor as unknown as { deliver?: (event: unknown, ids: string[]) => Array<Promise<unknown>>; share?: (e: SandboxEvent) => unknown };
  return s.deliver && s.share ? s.deliver(s.share(e), ids) : ids.map((id) => supervisor.dispatch(id, e));
}

function rssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
}

export async function benchSandbox(): Promise<BenchRow[]> {
  const bundle = await bundlePlugin({ entry: ECHO });

  // Direct: the same bundle evaluated in this process, the same capability function behind reply().
  type Handler = (e: unknown) => Promise<void> | void;
  const handlers = new Map<string, Handler>();
  const module = new Function(`${bundle.code}\nreturn __plugin;`)() as { default: (ctx: unknown) => void };
  module.default({ on: (type: string, fn: Handler) => handlers.set(type, fn), config: {}, bot: { name: 'bench', appId: '1' } });
  const directHandle = async (e: SandboxEvent) => {
    const copy = structuredClone(e); // the sandbox path copies the event too; keep the baseline honest
    await handlers.get(copy.type)!({ ...copy, reply: (body: unknown) => onCall('bench/alpha', 'reply', { ref: copy.ref, body }).then((r) => (r.ok ? r.value : undefined)) });
  };
  const directSerial = await drive(directHandle, 1);
  const directPiped = await drive(directHandle, IN_FLIGHT);

  const supervisor = new PluginSupervisor({ onCall });
  await supervisor.start();
  try {
    await supervisor.load(spec('bench/alpha', bundle));
    for (let i = 0; i < 500; i++) await supervisor.dispatch('bench/alpha', event(i)); // warm up
    replies = 0;
    const sandboxedSerial = await drive((e) => supervisor.dispatch('bench/alpha', e), 1);
    const sandboxedPiped = await drive((e) => supervisor.dispatch('bench/alpha', e), IN_FLIGHT);
    if (replies !== 2 * EVENTS) throw new Error(`sandboxed echo replied ${replies} times to ${2 * EVENTS} events`);

    // fan-out: each event to FAN_OUT echo instances, each answering; against one instance, same run
    const fanIds = Array.from({ length: FAN_OUT }, (_, i) => `bench/fan-${i}`);
    for (const id of fanIds) await supervisor.load(spec(id, bundle));
    const deliverTo = (ids: string[]) => (e: SandboxEvent) => Promise.all(fanOut(supervisor, e, ids));
    const single = await drive(deliverTo([fanIds[0]!]), IN_FLIGHT);
    const fanned = await drive(deliverTo(fanIds), IN_FLIGHT);
    for (const id of fanIds) await supervisor.unload(id);

    // noisy neighbour: echo's latency one event at a time, alone and while another plugin burns
    // 40 ms of CPU on every event it also gets
    const alone = await drive((e) => supervisor.dispatch('bench/alpha', e), 1, ONE_AT_A_TIME);
    await supervisor.load({ ...spec('bench/burner', await bundlePlugin({ entry: BURNER })), plugin: 'burner' });
    const echoOutcome = (e: SandboxEvent) => fanOut(supervisor, e, ['bench/alpha', 'bench/burner'])[0]!;
    const noisy = await drive(echoOutcome, 1, ONE_AT_A_TIME);
    await supervisor.unload('bench/burner');

    const pid = supervisor.hostPid!;
    const before = rssKb(pid);
    for (let i = 0; i < IDLE_ISOLATES; i++) await supervisor.load(spec(`bench/idle-${i}`, bundle));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const perIsolateMb = (rssKb(pid) - before) / 1024 / IDLE_ISOLATES;

    return [
      withRatio({ name: `sandboxed echo: events/s (${IN_FLIGHT} in flight)`, value: sandboxedPiped.perSecond, unit: 'ev/s', baseline: directPiped.perSecond }),
      withRatio({ name: 'sandboxed echo: events/s (one at a time)', value: sandboxedSerial.perSecond, unit: 'ev/s', baseline: directSerial.perSecond }),
      withRatio({ name: 'sandboxed echo: handler latency p50 (one at a time)', value: percentile(sandboxedSerial.latencies, 50), unit: 'ms', baseline: percentile(directSerial.latencies, 50) }),
      withRatio({ name: 'sandboxed echo: handler latency p99 (one at a time)', value: percentile(sandboxedSerial.latencies, 99), unit: 'ms', baseline: percentile(directSerial.latencies, 99) }),
      withRatio({ name: `fan-out: events/s, each to ${FAN_OUT} plugins answering (baseline: to 1)`, value: fanned.perSecond, unit: 'ev/s', baseline: single.perSecond }),
      withRatio({ name: 'noisy neighbour: echo p99, one at a time, beside a plugin burning 40 ms per event (baseline: alone)', value: percentile(noisy.latencies, 99), unit: 'ms', baseline: percentile(alone.latencies, 99) }),
      withRatio({ name: 'noisy neighbour: echo p50 (baseline: alone)', value: percentile(noisy.latencies, 50), unit: 'ms', baseline: percentile(alone.latencies, 50) }),
      { name: `RSS per idle plugin isolate (${IDLE_ISOLATES} loaded)`, value: perIsolateMb, unit: 'MB' },
    ];
  } finally {
    await supervisor.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.table(await benchSandbox());
}
