import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Secret } from '../runtime/config/secret.ts';
import type { GatewayBotInfo, GatewayDispatch } from '../runtime/gateway/dispatch-event.ts';
import { GatewayFatalError } from '../runtime/gateway/errors.ts';
import { INTENTS } from '../runtime/gateway/intents.ts';
import { AccessTokenSource, LegacyTokenSource, OpenAPIClient } from '../runtime/openapi/index.ts';
import { LocalSessionManager } from '../runtime/sessions/local.ts';
import { startSimulator, type FaultInput, type Simulator, type SimulatorOptions } from '../runtime/simulator/index.ts';

const INTENT_SET = INTENTS.PUBLIC_GUILD_MESSAGES! | INTENTS.GROUP_AND_C2C_EVENT!;
const guildIds = (count: number): string[] => Array.from({ length: count }, (_, i) => String(((1_000_000_000_000n + BigInt(i)) << 22n) + 4242n));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(predicate: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test('scripted fault run: 1,000 events, every close class, op 7, op 9, zombie, drop, restart, token expiry → none lost, none duplicated, in order', async () => {
  const APP_ID = '1020000001';
  const SECRET = 'fault-run-secret';
  const simOptions: SimulatorOptions = {
    bots: [{ appId: APP_ID, secret: SECRET }],
    heartbeatIntervalMs: 300,
    identifyWindowMs: 100,
    recommendedShards: 2,
    sessionStartLimit: { total: 1000, maxConcurrency: 2 },
    // tokens expire (and rotate) several times during the run
    tokenLifetimeSec: 3,
    printCredentials: false,
  };
  let sim: Simulator = await startSimulator(simOptions);
  const port = sim.port;
  const startedAt = Date.now();
  // event id → sessions the simulator numbered it into (0: no session existed, nothing could recover it)
  const reach = new Map<string, number>();
  const order = new Map<string, number>();
  const watch = (s: Simulator): void => {
    s.on('event', (e: { id: string; sessions: number }) => reach.set(e.id, e.sessions));
  };
  watch(sim);
  const tokens = new AccessTokenSource({ appId: APP_ID, secret: new Secret(SECRET), tokenEndpoint: `${sim.url}/app/getAppAccessToken` });
  const client = new OpenAPIClient({ baseUrl: sim.url, appId: APP_ID, tokenSource: tokens });
  const manager = new LocalSessionManager({
    gatewayInfo: () => client.gatewayBot(),
    tokenSource: tokens,
    intents: INTENT_SET,
    shards: 'auto',
    backoff: { minMs: 20, maxMs: 300 },
    identifyWindowMs: 100,
    helloTimeoutMs: 3000,
    readyTimeoutMs: 5000,
  });
  const received: GatewayDispatch[] = [];
  manager.on('dispatch', (d) => received.push(d));
  let fatal: Error | undefined;
  manager.on('fatal', (e) => (fatal = e));

  const faults: Array<FaultInput | 'restart'> = [
    { kind: 'close', code: 4009 },
    { kind: 'close', code: 4008 },
    { kind: 'reconnect' },
    { kind: 'stop_acks', shard: 0 },
    { kind: 'close', code: 4006 },
    { kind: 'drop' },
    { kind: 'close', code: 4007, shard: 1 },
    { kind: 'invalid_session', resumable: true },
    { kind: 'close', code: 4900 },
    'restart',
    { kind: 'close', code: 4004 },
    { kind: 'invalid_session', resumable: false, shard: 0 },
    { kind: 'close', code: 1000 },
    { kind: 'stop_acks' },
    { kind: 'close', code: 4000 },
    { kind: 'drop', shard: 1 },
    { kind: 'close', code: 4913 },
    { kind: 'reconnect', shard: 0 },
    { kind: 'close', code: 4009, shard: 1 },
  ];
  const TOTAL = 1000;
  // the last events are posted after the first access token has expired
  const TAIL = 20;
  const every = Math.floor((TOTAL - TAIL) / (faults.length + 1));
  const guilds = guildIds(4);

  try {
    await manager.start();
    for (let i = 0; i < TOTAL - TAIL; i++) {
      if (i > 0 && i % every === 0 && faults.length > 0) {
        const fault = faults.shift()!;
        if (fault === 'restart') {
          const state = sim.exportState();
          await sim.close();
          await sleep(200); // clients see a dead port for a moment
          sim = await startSimulator({ ...simOptions, port, state });
          watch(sim);
        } else {
          sim.fault(fault);
        }
      }
      const kind = i % 5 === 4 ? 'group_at' : 'guild_at';
      const { event_id } = sim.postMessage(kind === 'group_at' ? { kind, content: `n${i}` } : { kind, content: `n${i}`, guild_id: guilds[i % 4]! });
      order.set(event_id, i);
      if (i % 10 === 0) await sleep(15);
    }
    assert.equal(faults.length, 0, 'every fault was injected');
    // token expiry mid-session: outlive the first token, then force a resume that needs a fresh one
    await sleep(Math.max(0, startedAt + 3000 + 300 - Date.now()));
    sim.fault({ kind: 'drop' });
    for (let i = TOTAL - TAIL; i < TOTAL; i++) {
      const { event_id } = sim.postMessage({ kind: 'guild_at', content: `n${i}`, guild_id: guilds[i % 4]! });
      order.set(event_id, i);
    }
    // let the zombie shard be detected and everything resume
    await sleep(1500);
    const recoverable = [...reach.entries()].filter(([, n]) => n > 0).map(([id]) => id);
    const receivedIds = (): Set<string> => new Set(received.map((d) => d.id!));
    await until(() => recoverable.every((id) => receivedIds().has(id)), 'every recoverable event', 60_000).catch(() => undefined);
    await until(() => manager.shards().every((s) => s.state === 'ready'), 'all shards ready', 15_000);

    const counts = new Map<string, number>();
    for (const d of received) counts.set(d.id!, (counts.get(d.id!) ?? 0) + 1);
    const lost = recoverable.filter((id) => !counts.has(id));
    const duplicated = [...counts.values()].filter((n) => n > 1).reduce((a, n) => a + n - 1, 0);
    const unreachable = [...reach.values()].filter((n) => n === 0).length;
    const log = sim.sessionLog();
    const summary = {
      posted: TOTAL,
      recoverable: recoverable.length,
      unreachable_no_session: unreachable,
      received: received.length,
      lost: lost.length,
      duplicated,
      identifies: log.filter((e) => e.kind === 'identify').length,
      resumes: log.filter((e) => e.kind === 'resume' && e.outcome === 'ok').length,
      rejected: log.filter((e) => e.outcome === 'rejected').map((e) => `${e.kind}:${e.closeCode}`),
      reconnects: manager.shards().map((s) => s.reconnects),
    };
    console.log(`fault run: ${JSON.stringify(summary)}`);
    if (lost.length > 0) {
      const lostIdx = lost.map((id) => order.get(id)!).sort((a, b) => a - b);
      console.log(`lost indices: ${lostIdx.join(',')}`);
      console.log(`shards: ${JSON.stringify(manager.shards())}`);
      console.log(`session log: ${JSON.stringify(log.map((e) => [e.kind, e.outcome, e.shard?.[0], e.closeCode, e.time.slice(17, 23)]))}`);
    }
    assert.equal(fatal, undefined, 'no fault stopped the bot');
    assert.equal(lost.length, 0, `lost: ${lost.slice(0, 5).join(', ')}`);
    assert.equal(duplicated, 0);
    assert.ok(recoverable.length > TOTAL / 2, 'most events were recoverable: the faults did not simply starve the run');
    for (const shard of [0, 1]) {
      const indices = received.filter((d) => d.shard === shard).map((d) => order.get(d.id!)!);
      assert.ok(indices.length > 0);
      assert.deepEqual(indices, [...indices].sort((a, b) => a - b), `shard ${shard} delivered in posting order`);
    }
    // resumes did most of the recovering; identify only where the session was gone
    assert.ok(summary.resumes >= 10, `resumed ${summary.resumes} times`);
    assert.ok(!log.some((e) => e.closeCode === 4008), 'never tripped the identify rate limit');
    // token expiry: sessions were resumed with tokens minted after the first one had expired
    const firstExpiry = startedAt + 3000;
    assert.ok(log.some((e) => e.kind === 'resume' && e.outcome === 'ok' && Date.parse(e.time) > firstExpiry), 'resumed after the first token expired');
  } finally {
    await manager.stop({ resumable: false });
    tokens.close();
    await sim.close();
  }
});

test('20 shards with max_concurrency 1: no identify-rate close, identifies spaced by the window (simulator clock)', async () => {
  const APP_ID = '1020000001';
  const WINDOW = 120;
  const sim = await startSimulator({
    bots: [{ appId: APP_ID, secret: 's20' }],
    heartbeatIntervalMs: 1000,
    identifyWindowMs: WINDOW,
    recommendedShards: 20,
    sessionStartLimit: { total: 1000, maxConcurrency: 1 },
    printCredentials: false,
  });
  const tokens = new AccessTokenSource({ appId: APP_ID, secret: new Secret('s20'), tokenEndpoint: `${sim.url}/app/getAppAccessToken` });
  const client = new OpenAPIClient({ baseUrl: sim.url, appId: APP_ID, tokenSource: tokens });
  const manager = new LocalSessionManager({
    gatewayInfo: () => client.gatewayBot(),
    tokenSource: tokens,
    intents: INTENT_SET,
    shards: 'auto',
    identifyWindowMs: WINDOW,
    backoff: { minMs: 50, maxMs: 500 },
  });
  try {
    await manager.start();
    assert.equal(manager.shards().length, 20);
    const identifies = sim.sessionLog().filter((e) => e.kind === 'identify');
    assert.equal(identifies.filter((e) => e.outcome === 'rejected').length, 0, 'no identify was refused');
    assert.equal(identifies.length, 20, 'one identify per shard, no retries');
    assert.deepEqual(identifies.map((e) => e.shard![0]).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
    for (let k = 1; k < identifies.length; k++) {
      const gap = identifies[k]!.at - identifies[k - 1]!.at;
      assert.ok(gap >= WINDOW, `identify ${k} came ${gap.toFixed(1)} ms after the previous one (window ${WINDOW} ms)`);
    }
  } finally {
    await manager.stop({ resumable: false });
    tokens.close();
    await sim.close();
  }
});

test('fatal closes stop only that bot, name the cause, and do not retry; another bot keeps running', async () => {
  const HEALTHY = { appId: '1020000001', secret: 'healthy' };
  const LEGACY = { appId: '1020000002', secret: 'legacy-secret', token: 'the-right-token' };
  const PUBLIC = { appId: '1020000003', secret: 'public-secret', deniedIntents: INTENTS.GUILD_MESSAGES! | INTENTS.FORUMS_EVENT! };
  const UNPUBLISHED = { appId: '1020000004', secret: 'unpublished' };
  const sim = await startSimulator({ bots: [HEALTHY, LEGACY, PUBLIC, UNPUBLISHED], heartbeatIntervalMs: 400, identifyWindowMs: 100, printCredentials: false });
  const staticInfo = async (): Promise<GatewayBotInfo> => ({ url: sim.gatewayUrl, shards: 1, session_start_limit: { total: 1000, remaining: 1000, reset_after: 0, max_concurrency: 1 } });
  const sources: Array<{ close(): void }> = [];
  const managers: LocalSessionManager[] = [];
  const managerFor = (appId: string, secret: string, intents = INTENT_SET): LocalSessionManager => {
    const tokens = new AccessTokenSource({ appId, secret: new Secret(secret), tokenEndpoint: `${sim.url}/app/getAppAccessToken` });
    sources.push(tokens);
    const m = new LocalSessionManager({ gatewayInfo: staticInfo, tokenSource: tokens, intents, shards: 1, backoff: { minMs: 50, maxMs: 200 }, identifyWindowMs: 100 });
    managers.push(m);
    return m;
  };
  try {
    const healthy = managerFor(HEALTHY.appId, HEALTHY.secret);
    const healthyEvents: string[] = [];
    healthy.on('dispatch', (d) => healthyEvents.push(d.id!));
    await healthy.start();

    // 4004: a wrong legacy token; the token is "refreshed" once (it cannot change) and then the bot stops
    const legacy = new LocalSessionManager({ gatewayInfo: staticInfo, tokenSource: new LegacyTokenSource(LEGACY.appId, new Secret('the-wrong-token')), intents: INTENT_SET, shards: 1, backoff: { minMs: 50, maxMs: 200 } });
    managers.push(legacy);
    const legacyFatal: GatewayFatalError[] = [];
    legacy.on('fatal', (e) => legacyFatal.push(e));
    await assert.rejects(legacy.start(), (e: unknown) => e instanceof GatewayFatalError && e.code === 'E_GATEWAY_AUTH' && /4004/.test(e.message) && !e.message.includes('the-wrong-token'));
    // the simulator cannot name the app of an unauthenticated identify: count rejected 4004s
    const authRejected = (): number => sim.sessionLog().filter((e) => e.closeCode === 4004).length;
    assert.equal(authRejected(), 2, 'one identify, one after the refresh, then stop');

    // a wrong secret: the token endpoint refuses; no identify at all
    const wrongSecret = managerFor(HEALTHY.appId, 'not-the-secret');
    await assert.rejects(wrongSecret.start(), (e: unknown) => e instanceof GatewayFatalError && e.code === 'E_GATEWAY_AUTH' && /access token refused/.test(e.message) && !e.message.includes('not-the-secret'));

    // 4014: private-domain intents on a public bot
    const publicBot = managerFor(PUBLIC.appId, PUBLIC.secret, INTENT_SET | INTENTS.GUILD_MESSAGES!);
    await assert.rejects(publicBot.start(), (e: unknown) => e instanceof GatewayFatalError && e.code === 'E_GATEWAY_INTENTS' && /4014/.test(e.message) && /intents not permitted/.test(e.message));
    assert.equal(sim.sessionLog().filter((e) => e.appId === PUBLIC.appId).length, 1, 'exactly one identify for the 4014 bot');

    // 4914 in the middle of a session
    const unpublished = managerFor(UNPUBLISHED.appId, UNPUBLISHED.secret);
    await unpublished.start();
    const fatalSeen = new Promise<GatewayFatalError>((resolve) => unpublished.on('fatal', resolve));
    sim.fault({ kind: 'close', code: 4914, appId: UNPUBLISHED.appId });
    const offline = await fatalSeen;
    assert.equal(offline.code, 'E_BOT_OFFLINE');
    assert.match(offline.message, /unpublished.*4914/);
    assert.equal(unpublished.shards()[0]!.state, 'fatal');

    await sleep(800); // several backoff periods: a retrying bot would show up in the log
    assert.equal(authRejected(), 2, 'no retry for the 4004 bot');
    assert.equal(sim.sessionLog().filter((e) => e.appId === PUBLIC.appId).length, 1, 'no retry for the 4014 bot');
    assert.equal(sim.sessionLog().filter((e) => e.appId === UNPUBLISHED.appId).length, 1, 'no retry for the 4914 bot');
    assert.equal(legacyFatal.length, 1, 'fatal emitted once');

    // the healthy bot is untouched
    assert.equal(healthy.shards()[0]!.state, 'ready');
    const { event_id } = sim.postMessage({ kind: 'guild_at', content: 'still here?', appId: HEALTHY.appId });
    await until(() => healthyEvents.includes(event_id), 'the healthy bot to receive an event');
    assert.equal(sim.sessionLog().filter((e) => e.appId === HEALTHY.appId).length, 1);
  } finally {
    await Promise.all(managers.map((m) => m.stop({ resumable: false })));
    for (const s of sources) s.close();
    await sim.close();
  }
});
