/**
 * Resume across restarts (local sessions): a deploy — SIGTERM, start again — loses nothing. The runtime
 * is a real OS process; the simulator runs in this process, so it (and its outbox) outlives both runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSimulator } from '../runtime/simulator/index.ts';
import { SessionFile } from '../runtime/sessions/session-file.ts';
import { startBotProcess } from './support/bot-process.ts';
import { APP_ID as CLUSTER_APP_ID, startCluster } from './support/cluster.ts';

const FIXTURE_PLUGINS = fileURLToPath(new URL('./fixtures/runtime/plugins', import.meta.url));
const APP_ID = '1020000001';

test('SIGTERM while the platform pushes 50 msg/s, start again within 10 s: every shard resumes (no identify) and every message is answered exactly once', { timeout: 180_000 }, async () => {
  const sim = await startSimulator({ bots: [{ appId: APP_ID, secret: 'restart-secret' }], recommendedShards: 2, identifyWindowMs: 200, printCredentials: false });
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-restart-'));
  writeFileSync(join(dir, 'bot.yaml'), [
    `pluginsDir: ${FIXTURE_PLUGINS}`,
    `dataDir: ${join(dir, 'data')}`,
    'bots:',
    '  - name: demo',
    `    appId: "${APP_ID}"`,
    '    secret: restart-secret',
    `    endpoint: ${sim.url}`,
    `    tokenEndpoint: ${sim.url}/app/getAppAccessToken`,
    '    shards: 2',
    '    identifyWindowMs: 200',
    '    plugins: { answer: {} }',
  ].join('\n'));
  // guild messages on both shards, and C2C on shard 0. Spread over 20 guilds (a channel each): the
  // platform takes at most 5 messages per second into one channel, and guild k lands on shard k % 2.
  const guilds = Array.from({ length: 20 }, (_, k) => String((BigInt(k + 1) << 22n) + 1n));
  const first = startBotProcess(dir);
  let second: ReturnType<typeof startBotProcess> | undefined;
  const posted = new Set<string>();
  let posting = true;
  let n = 0;
  let traffic = Promise.resolve();
  try {
    // from when the first run has its sessions: before that the platform has nobody to deliver to
    await first.running();
    traffic = (async () => {
      while (posting) {
        const input = n % 3 === 2 ? { kind: 'c2c' as const, content: `c${n}`, user: { id: `user-${n % 7}` } } : { kind: 'guild_at' as const, content: `g${n}`, guild_id: guilds[n % guilds.length]! };
        posted.add(sim.postMessage(input).id);
        n++;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    first.kill('SIGTERM');
    assert.equal(await first.exited, 0, first.output.stderr);
    assert.deepEqual(readdirSync(join(dir, 'data', 'sessions')), ['demo.json'], 'the resume points were saved under the data dir');
    const identifiesBefore = sim.sessionLog().filter((e) => e.kind === 'identify').length;

    // the platform keeps pushing while nothing listens; the next run starts well within 10 s
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    second = startBotProcess(dir);
    await second.running();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    posting = false;
    await traffic;

    const answers = (): Map<string, number> => {
      const count = new Map<string, number>();
      for (const entry of sim.outbox()) if (entry.msg_id !== undefined && posted.has(entry.msg_id)) count.set(entry.msg_id, (count.get(entry.msg_id) ?? 0) + 1);
      return count;
    };
    const deadline = Date.now() + 30_000;
    while (answers().size < posted.size && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const counted = answers();
    assert.equal(counted.size, posted.size, `every message answered (${counted.size}/${posted.size})`);
    assert.deepEqual([...counted].filter(([, k]) => k > 1), [], 'none answered twice');

    const log = sim.sessionLog();
    assert.equal(log.filter((e) => e.kind === 'identify').length, identifiesBefore, 'the second run identified nothing');
    // one session per shard; a 4008 refusal (two identifies closer than the window once a loaded machine
    // delays the first in transit) is retried by the runtime and may add a rejected entry, not a session
    const firstRunSessions = log.filter((e) => e.kind === 'identify' && e.outcome === 'ok');
    assert.deepEqual(firstRunSessions.map((e) => e.shard?.[0]).sort(), [0, 1], JSON.stringify(log));
    assert.equal(log.filter((e) => e.kind === 'resume' && e.outcome === 'ok').length, 2, 'both shards resumed');
    assert.match(second.output.stdout, /resuming the sessions saved by the previous run/);
    assert.deepEqual(readdirSync(join(dir, 'data', 'sessions')), [], 'the saved file was taken');
    console.log(`# restart: ${posted.size} messages posted at 50/s across the restart, each answered once`);
  } finally {
    posting = false;
    await traffic;
    first.kill('SIGKILL');
    second?.kill('SIGKILL');
    await Promise.all([first.exited, second?.exited]);
    await sim.close();
  }
});

test('a saved session the platform no longer knows: the next start identifies instead and answers what comes after', { timeout: 120_000 }, async () => {
  // sessions stay resumable for 300 ms only: the restart comes too late
  const sim = await startSimulator({ bots: [{ appId: APP_ID, secret: 'late-secret' }], resumeWindowMs: 300, identifyWindowMs: 200, printCredentials: false });
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-late-'));
  writeFileSync(join(dir, 'bot.yaml'), [
    `pluginsDir: ${FIXTURE_PLUGINS}`,
    `dataDir: ${join(dir, 'data')}`,
    'bots:',
    `  - { name: demo, appId: "${APP_ID}", secret: late-secret, endpoint: "${sim.url}", tokenEndpoint: "${sim.url}/app/getAppAccessToken", shards: 1, identifyWindowMs: 200, plugins: { answer: {} } }`,
  ].join('\n'));
  const first = startBotProcess(dir);
  let second: ReturnType<typeof startBotProcess> | undefined;
  try {
    await first.running();
    first.kill('SIGTERM');
    assert.equal(await first.exited, 0, first.output.stderr);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    second = startBotProcess(dir);
    await second.running();
    const { id } = sim.postMessage({ kind: 'c2c', content: 'after' });
    const deadline = Date.now() + 20_000;
    while (!sim.outbox().some((e) => e.msg_id === id) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(sim.outbox().filter((e) => e.msg_id === id).length, 1, 'answered by the new session');
    const log = sim.sessionLog();
    assert.deepEqual(log.map((e) => [e.kind, e.outcome]), [['identify', 'ok'], ['resume', 'rejected'], ['identify', 'ok']]);
  } finally {
    first.kill('SIGKILL');
    second?.kill('SIGKILL');
    await Promise.all([first.exited, second?.exited]);
    await sim.close();
  }
});

test('Redis sessions: SIGTERM, start again: the shards resume from the records kept in Redis and every message is answered once', { timeout: 180_000 }, async () => {
  const c = await startCluster({ shards: 2, leaseTtlMs: 2_000, identifyWindowMs: 200 });
  const posted = new Set<string>();
  let posting = true;
  let traffic = Promise.resolve();
  try {
    const first = c.start();
    await first.running();
    traffic = (async () => {
      for (let n = 0; posting; n++) {
        posted.add(c.sim.postMessage({ kind: 'guild_at', content: `r${n}`, channel_id: c.channels[n % c.channels.length]! }).id);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    first.kill('SIGTERM');
    assert.equal(await first.exited, 0, first.output.stderr);
    assert.deepEqual(await c.owners(), [undefined, undefined], 'both leases released on the way out');
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const second = c.start();
    await second.running();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    posting = false;
    await traffic;
    const answered = () => c.sim.outbox().filter((e) => e.msg_id !== undefined && posted.has(e.msg_id));
    const deadline = Date.now() + 30_000;
    while (new Set(answered().map((e) => e.msg_id)).size < posted.size && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const missing = [...posted].filter((id) => !answered().some((e) => e.msg_id === id));
    const notable = (p: typeof first): string => p.output.stdout.split('\n').filter((l) => /"level":(40|50|60)|drop|lost|unknown|resum/i.test(l)).slice(-40).join('\n') + p.output.stderr.slice(-2000);
    assert.deepEqual(missing, [], `every message answered\n--- first run\n${notable(first)}\n--- second run\n${notable(second)}`);
    assert.equal(answered().length, posted.size, 'none answered twice');
    const log = c.sim.sessionLog().filter((e) => e.appId === CLUSTER_APP_ID);
    const identifies = log.filter((e) => e.kind === 'identify');
    assert.deepEqual(identifies.filter((e) => e.outcome === 'ok').map((e) => e.shard?.[0]).sort(), [0, 1], JSON.stringify(log));
    assert.ok(identifies.every((e) => e.n < (log.find((r) => r.kind === 'resume')?.n ?? Infinity)), 'the second run identified nothing');
    assert.equal(log.filter((e) => e.kind === 'resume' && e.outcome === 'ok').length, 2, 'the second run resumed both');
  } finally {
    posting = false;
    await traffic;
    await c.close();
  }
});

test('saved sessions are taken by one process only, and what a killed process left behind is swept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-session-file-'));
  const file = (appId = APP_ID) => new SessionFile({ dir, bot: 'demo', appId });
  await file().save([{ shard: 0, sessionId: 's-0', seq: 41, settledAbove: ['e:x'] }, { shard: 1, sessionId: 's-1', seq: 7 }]);
  const [one, two] = await Promise.all([file().take(), file().take()]);
  assert.deepEqual([one.length, two.length].sort(), [0, 2], 'two processes starting together: one resumes, the other identifies');
  assert.deepEqual([...one, ...two].find((s) => s.shard === 0), { shard: 0, sessionId: 's-0', seq: 41, settledAbove: ['e:x'] });

  await file().save([{ shard: 0, sessionId: 's-0', seq: 1 }]);
  assert.deepEqual(await file('999').take(), [], 'sessions of another appId are not resumed');

  // left by a process killed mid-save (no such pid), and one of a live process (this one) that must stay
  writeFileSync(join(dir, 'demo.json.2147483646.abcd1234.tmp'), '{');
  writeFileSync(join(dir, `demo.json.${process.pid}.abcd1234.tmp`), '{');
  writeFileSync(join(dir, 'other.json'), '{}');
  assert.deepEqual(await file().take(), []);
  assert.deepEqual(readdirSync(dir).sort(), [`demo.json.${process.pid}.abcd1234.tmp`, 'other.json']);
});
