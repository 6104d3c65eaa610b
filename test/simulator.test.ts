import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey, verify as edVerify } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import WebSocket from 'ws';
import { createLogger } from '../runtime/logging/logger.ts';
import { parseBotFlag, seedFromSecret, startSimulator, WebhookSigner, type Simulator, type SimulatorOptions } from '../runtime/simulator/index.ts';

const APP = '1020000001';
const SECRET = 'simulator-secret';
const LEGACY = 'simulator-token';
const AT = 1 << 30;
const GROUP_C2C = 1 << 25;
const GUILDS = 1 << 0;

interface Frame { op: number; d?: any; s?: number; t?: string; id?: string }

/** A bare websocket client that acts as a bot; every frame is queued for the test to take. */
class RawBot {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: Array<() => void> = [];

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (data) => {
      this.frames.push(JSON.parse(String(data)) as Frame);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.ws.on('error', () => undefined);
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => {
      resolve({ code, reason: String(reason) });
      for (const w of this.#waiters.splice(0)) w();
    }));
  }

  static async connect(sim: Simulator): Promise<RawBot> {
    const bot = new RawBot(sim.gatewayUrl);
    const hello = await bot.next((f) => f.op === 10);
    assert.equal(typeof hello.d.heartbeat_interval, 'number');
    return bot;
  }

  send(payload: unknown): void {
    this.ws.send(typeof payload === 'string' ? payload : JSON.stringify(payload));
  }

  /** Takes (removes) the first queued frame matching `pred`, waiting for it if needed. */
  async next(pred: (f: Frame) => boolean = () => true, timeoutMs = 10_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`socket closed while waiting; queued: ${JSON.stringify(this.frames.map((f) => f.t ?? f.op))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a frame; queued: ${JSON.stringify(this.frames.map((f) => f.t ?? f.op))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  async identify(token: string, intents: number, shard: [number, number] = [0, 1]): Promise<Frame> {
    this.send({ op: 2, d: { token, intents, shard, properties: {} } });
    return this.next((f) => f.t === 'READY');
  }

  close(): void {
    this.ws.terminate();
  }
}

async function token(sim: Simulator, appId = APP, secret = SECRET): Promise<string> {
  const res = await fetch(`${sim.url}/app/getAppAccessToken`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ appId, clientSecret: secret }) });
  const body = (await res.json()) as { access_token: string };
  return body.access_token;
}

async function api(sim: Simulator, method: string, path: string, auth: string | undefined, body?: unknown): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (auth !== undefined) headers.authorization = auth;
  const res = await fetch(`${sim.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

const control = (sim: Simulator, method: string, path: string, body?: unknown) => api(sim, method, `/_simulator${path}`, undefined, body);

function shardOf(guildId: string, count: number): number {
  return Number((BigInt(guildId) >> 22n) % BigInt(count));
}

async function withSim<T>(options: SimulatorOptions, fn: (sim: Simulator) => Promise<T>): Promise<T> {
  const sim = await startSimulator(options);
  try {
    return await fn(sim);
  } finally {
    await sim.close();
  }
}

describe('token endpoint and auth', () => {
  test('returns the same token while valid, rejects wrong credentials, and accepts both header forms', async () => {
    await withSim({}, async (sim) => {
      const r1 = await api(sim, 'POST', '/app/getAppAccessToken', undefined, { appId: APP, clientSecret: SECRET });
      assert.equal(typeof r1.body.access_token, 'string');
      assert.equal(typeof r1.body.expires_in, 'string');
      assert.ok(Number(r1.body.expires_in) <= 7200 && Number(r1.body.expires_in) > 7000);
      const r2 = await api(sim, 'POST', '/app/getAppAccessToken', undefined, { appId: APP, clientSecret: SECRET });
      assert.equal(r2.body.access_token, r1.body.access_token);
      assert.ok(Number(r2.body.expires_in) <= Number(r1.body.expires_in));

      const wrong = await api(sim, 'POST', '/app/getAppAccessToken', undefined, { appId: APP, clientSecret: 'nope' });
      assert.equal(wrong.body.code, 100016);
      assert.equal(wrong.body.access_token, undefined);

      assert.equal((await api(sim, 'GET', '/users/@me', `QQBot ${r1.body.access_token}`)).status, 200);
      assert.equal((await api(sim, 'GET', '/users/@me', `Bot ${APP}.${LEGACY}`)).status, 200);
      for (const bad of [undefined, 'Bearer x', `QQBot not-a-token`, `Bot ${APP}.wrong`]) {
        const res = await api(sim, 'GET', '/users/@me', bad);
        assert.equal(res.status, 401, String(bad));
        assert.ok([11241, 11244].includes(res.body.code), `code ${res.body.code}`);
        const trace = res.headers.get('x-tps-trace-id');
        assert.ok(trace && trace.length > 8);
        assert.equal(res.body.trace_id, trace);
      }
    });
  });

  test('a short-lived token expires for real; near expiry a new one is minted and the old one keeps working', async () => {
    await withSim({ tokenLifetimeSec: 1 }, async (sim) => {
      const first = await token(sim);
      // lifetime < 60 s: every request falls inside the renewal window and mints a new token
      const second = await token(sim);
      assert.notEqual(first, second);
      assert.equal((await api(sim, 'GET', '/users/@me', `QQBot ${first}`)).status, 200);
      let res;
      const deadline = Date.now() + 15_000;
      do {
        await new Promise((r) => setTimeout(r, 100));
        res = await api(sim, 'GET', '/users/@me', `QQBot ${first}`);
      } while (res.status === 200 && Date.now() < deadline);
      assert.equal(res.status, 401);
      assert.equal(res.body.code, 11244);
    });
  });
});

describe('OpenAPI', () => {
  let sim: Simulator;
  let auth: string;
  before(async () => {
    sim = await startSimulator({ replyWindowMs: { group: 300 } });
    auth = `QQBot ${await token(sim)}`;
  });
  after(() => sim.close());

  test('discovery and the seeded world: guilds spread over 4 shards, channels, members, roles', async () => {
    const gw = await api(sim, 'GET', '/gateway/bot', auth);
    assert.equal(gw.body.url, sim.gatewayUrl);
    assert.equal(gw.body.shards, 1);
    assert.deepEqual(Object.keys(gw.body.session_start_limit).sort(), ['max_concurrency', 'remaining', 'reset_after', 'total']);
    assert.equal((await api(sim, 'GET', '/gateway', auth)).body.url, sim.gatewayUrl);
    const guilds = (await api(sim, 'GET', '/users/@me/guilds', auth)).body as Array<{ id: string }>;
    assert.ok(guilds.length >= 2);
    assert.deepEqual(new Set(guilds.map((g) => shardOf(g.id, 4))), new Set([0, 1, 2, 3]));
    const g = guilds[0]!.id;
    assert.equal((await api(sim, 'GET', `/guilds/${g}`, auth)).body.id, g);
    const channels = (await api(sim, 'GET', `/guilds/${g}/channels`, auth)).body as Array<{ id: string; guild_id: string }>;
    assert.ok(channels.length >= 1 && channels.every((c) => c.guild_id === g));
    const members = (await api(sim, 'GET', `/guilds/${g}/members?limit=100`, auth)).body as Array<{ user: { id: string } }>;
    assert.ok(members.length >= 2);
    const roles = (await api(sim, 'GET', `/guilds/${g}/roles`, auth)).body;
    assert.ok(roles.roles.length >= 4);
    const created = await api(sim, 'POST', `/guilds/${g}/roles`, auth, { name: 'testers' });
    assert.equal(created.body.role.name, 'testers');
    assert.equal((await api(sim, 'PUT', `/guilds/${g}/members/${members[0]!.user.id}/roles/${created.body.role_id}`, auth)).status, 204);
    const missing = await api(sim, 'GET', '/guilds/1/channels', auth);
    assert.equal(missing.status, 404);
    assert.equal(typeof missing.body.trace_id, 'string');
    assert.equal((await api(sim, 'GET', '/no/such/api', auth)).status, 404);
  });

  test('channel messages: content required, msg_id must exist, permission enforced, proactive counted', async () => {
    const posted = sim.postMessage({ kind: 'guild_at', content: 'hello' });
    const world = (await control(sim, 'GET', '/world')).body;
    const guild = world.guilds[0];
    const general = guild.channels.find((c: any) => c.name === 'general');
    const announcements = guild.channels.find((c: any) => c.name === 'announcements');
    const empty = await api(sim, 'POST', `/channels/${general.id}/messages`, auth, { msg_id: posted.id });
    assert.equal(empty.body.code, 50006);
    const bogus = await api(sim, 'POST', `/channels/${general.id}/messages`, auth, { content: 'x', msg_id: 'not-a-message' });
    assert.equal(bogus.body.code, 304026);
    const denied = await api(sim, 'POST', `/channels/${announcements.id}/messages`, auth, { content: 'x' });
    assert.equal(denied.status, 403);
    const before = sim.outbox().at(-1)?.n ?? 0;
    const reply = await api(sim, 'POST', `/channels/${general.id}/messages`, auth, { content: 'pong', msg_id: posted.id });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.content, 'pong');
    const proactive = await api(sim, 'POST', `/channels/${general.id}/messages`, auth, { content: 'unprompted' });
    assert.equal(proactive.status, 200);
    const out = (await control(sim, 'GET', `/outbox?since=${before}`)).body;
    assert.deepEqual(out.map((e: any) => [e.body.content, e.passive, e.msg_id ?? null]), [['pong', true, posted.id], ['unprompted', false, null]]);
    assert.ok(out[1].n > out[0].n);
    assert.equal((await api(sim, 'DELETE', `/channels/${general.id}/messages/${reply.body.id}`, auth)).status, 204);
    assert.equal(sim.outbox(before)[0]!.recalled, true);
  });

  test('group and C2C: msg_seq dedupe, five replies per msg_id, reply window, uploads', async () => {
    const group = sim.postMessage({ kind: 'group_at', content: 'hi', group_openid: 'GROUPTEST1' });
    const path = '/v2/groups/GROUPTEST1/messages';
    assert.equal((await api(sim, 'POST', path, auth, { msg_type: 0, content: 'a', msg_id: group.id, msg_seq: 1 })).status, 200);
    const dup = await api(sim, 'POST', path, auth, { msg_type: 0, content: 'a', msg_id: group.id, msg_seq: 1 });
    assert.equal(dup.body.code, 40054005);
    for (let seq = 2; seq <= 5; seq++) assert.equal((await api(sim, 'POST', path, auth, { msg_type: 0, content: 'a', msg_id: group.id, msg_seq: seq })).status, 200);
    const sixth = await api(sim, 'POST', path, auth, { msg_type: 0, content: 'a', msg_id: group.id, msg_seq: 6 });
    assert.equal(sixth.status, 400);
    assert.equal(sixth.body.code, 40054010);
    const empty = await api(sim, 'POST', path, auth, { msg_type: 0, content: '', msg_id: group.id, msg_seq: 7 });
    assert.equal(empty.body.code, 50006);

    const late = sim.postMessage({ kind: 'group_at', content: 'late', group_openid: 'GROUPTEST1' });
    await new Promise((r) => setTimeout(r, 400)); // past the 300 ms group window configured above
    const expired = await api(sim, 'POST', path, auth, { msg_type: 0, content: 'a', msg_id: late.id });
    assert.equal(expired.body.code, 304027);

    const c2c = sim.postMessage({ kind: 'c2c', content: 'hi', user: { id: 'USERTEST1' } });
    const up = await api(sim, 'POST', '/v2/users/USERTEST1/files', auth, { file_type: 1, url: 'https://example.invalid/a.png', srv_send_msg: false });
    assert.equal(typeof up.body.file_info, 'string');
    const media = await api(sim, 'POST', '/v2/users/USERTEST1/messages', auth, { msg_type: 7, content: ' ', media: { file_info: up.body.file_info }, msg_id: c2c.id });
    assert.equal(media.status, 200);
    assert.equal(typeof media.body.id, 'string');
    // a C2C upload is not valid for a group
    const cross = await api(sim, 'POST', path, auth, { msg_type: 7, content: ' ', media: { file_info: up.body.file_info } });
    assert.equal(cross.status, 400);
  });

  test('rate_limit fault: the next N calls to the route answer 429 with a retry hint, then it passes', async () => {
    const guildId = (await api(sim, 'GET', '/users/@me/guilds', auth)).body[0].id;
    const res = await control(sim, 'POST', '/faults', { kind: 'rate_limit', route: 'GET /guilds/{guild_id}', count: 2 });
    assert.equal(res.status, 200);
    for (let i = 0; i < 2; i++) {
      const limited = await api(sim, 'GET', `/guilds/${guildId}`, auth);
      assert.equal(limited.status, 429);
      assert.equal(limited.headers.get('retry-after'), '1');
      assert.equal(typeof limited.body.code, 'number');
    }
    assert.equal((await api(sim, 'GET', `/guilds/${guildId}`, auth)).status, 200);
  });
});

describe('gateway', () => {
  test('identify, READY, heartbeat ACK, and routing by shard and intents', async () => {
    await withSim({ sessionStartLimit: { total: 100, maxConcurrency: 10 } }, async (sim) => {
      const tok = `QQBot ${await token(sim)}`;
      const bots: RawBot[] = [];
      for (let i = 0; i < 4; i++) {
        const bot = await RawBot.connect(sim);
        const ready = await bot.identify(tok, AT | GROUP_C2C, [i, 4]);
        assert.deepEqual(ready.d.shard, [i, 4]);
        assert.equal(typeof ready.d.session_id, 'string');
        bots.push(bot);
      }
      const noAt = await RawBot.connect(sim);
      await noAt.identify(tok, GUILDS, [0, 1]);
      bots[0]!.send({ op: 1, d: 1 });
      await bots[0]!.next((f) => f.op === 11);

      const guilds = (await api(sim, 'GET', '/users/@me/guilds', tok)).body as Array<{ id: string }>;
      for (const g of guilds) sim.postMessage({ kind: 'guild_at', content: `to ${g.id}`, guild_id: g.id });
      const group = sim.postMessage({ kind: 'group_at', content: 'group' });
      for (const g of guilds) {
        const owner = bots[shardOf(g.id, 4)]!;
        const f = await owner.next((x) => x.t === 'AT_MESSAGE_CREATE' && x.d.guild_id === g.id);
        assert.ok(f.d.content.endsWith(`to ${g.id}`));
        assert.equal(typeof f.s, 'number');
        assert.match(f.id!, /^AT_MESSAGE_CREATE:/);
      }
      const gf = await bots[0]!.next((x) => x.t === 'GROUP_AT_MESSAGE_CREATE');
      assert.equal(gf.d.id, group.id);
      // nothing else arrived anywhere: each guild message went to exactly one shard, group only to 0
      const sessions = sim.sessions();
      const seqs = sessions.filter((s) => s.shard[1] === 4).sort((a, b) => a.shard[0] - b.shard[0]);
      const perShard = [0, 1, 2, 3].map((i) => guilds.filter((g) => shardOf(g.id, 4) === i).length + (i === 0 ? 1 : 0));
      assert.deepEqual(seqs.map((s) => s.seq - 1), perShard);
      assert.equal(sessions.find((s) => s.intents === GUILDS)!.seq, 1, 'a session without the AT intent got nothing');
      for (const b of [...bots, noAt]) assert.deepEqual(b.frames.filter((f) => f.op === 0), []);
      for (const b of [...bots, noAt]) b.close();
    });
  });

  test('close codes: 4004 bad token, 4013 invalid intents, 4014 denied intents, 4010 bad shard, 4008 too fast, 4006/4007 bad resume', async () => {
    await withSim({ bots: [{ appId: APP, secret: SECRET, token: LEGACY, deniedIntents: 1 << 9 }], identifyWindowMs: 60_000 }, async (sim) => {
      const tok = `QQBot ${await token(sim)}`;
      const expectClose = async (payload: unknown, code: number) => {
        const bot = await RawBot.connect(sim);
        bot.send(payload);
        assert.equal((await bot.closed).code, code, JSON.stringify(payload));
      };
      await expectClose({ op: 2, d: { token: 'QQBot wrong', intents: AT, shard: [0, 1] } }, 4004);
      await expectClose({ op: 2, d: { token: tok, intents: 1 << 2, shard: [0, 1] } }, 4013);
      await expectClose({ op: 2, d: { token: tok, intents: AT | (1 << 9), shard: [0, 1] } }, 4014);
      await expectClose({ op: 2, d: { token: tok, intents: AT, shard: [2, 2] } }, 4010);
      const first = await RawBot.connect(sim);
      const ready = await first.identify(`Bot ${APP}.${LEGACY}`, AT);
      await expectClose({ op: 2, d: { token: tok, intents: AT, shard: [0, 1] } }, 4008);
      await expectClose({ op: 6, d: { token: tok, session_id: 'nope', seq: 0 } }, 4006);
      await expectClose({ op: 6, d: { token: tok, session_id: ready.d.session_id, seq: 99 } }, 4007);
      const log = sim.sessionLog();
      assert.deepEqual(log.map((e) => [e.kind, e.outcome, e.closeCode ?? null]), [
        ['identify', 'rejected', 4004], ['identify', 'rejected', 4013], ['identify', 'rejected', 4014], ['identify', 'rejected', 4010],
        ['identify', 'ok', null], ['identify', 'rejected', 4008], ['resume', 'rejected', 4006], ['resume', 'rejected', 4007],
      ]);
      assert.ok(log.every((e, i) => i === 0 || e.at >= log[i - 1]!.at), 'monotonic timestamps');
      assert.deepEqual((await control(sim, 'GET', '/sessions/log')).body.map((e: any) => e.n), log.map((e) => e.n));
      first.close();
    });
  });

  test('replays 100 events missed while disconnected, in order, then RESUMED', async () => {
    await withSim({}, async (sim) => {
      const tok = `QQBot ${await token(sim)}`;
      const bot = await RawBot.connect(sim);
      const ready = await bot.identify(tok, AT);
      sim.postMessage({ kind: 'guild_at', content: 'seen' });
      const seen = await bot.next((f) => f.t === 'AT_MESSAGE_CREATE');
      bot.close();
      await bot.closed;
      await waitFor(() => sim.sessions()[0]?.connected === false);
      const ids = [];
      for (let i = 0; i < 100; i++) ids.push(sim.postMessage({ kind: 'guild_at', content: `missed ${i}` }).event_id);
      const again = await RawBot.connect(sim);
      again.send({ op: 6, d: { token: tok, session_id: ready.d.session_id, seq: seen.s } });
      const resumed = await again.next((f) => f.t === 'RESUMED');
      assert.equal(resumed.d, '');
      const replayed = again.frames.splice(0).filter((f) => f.op === 0);
      assert.deepEqual(replayed.map((f) => f.id), ids);
      assert.deepEqual(replayed.map((f) => f.s), ids.map((_, i) => seen.s! + 1 + i));
      assert.deepEqual(replayed.map((f) => f.d.content.replace(/^<@!\d+> /, '')), ids.map((_, i) => `missed ${i}`));
      assert.equal(sim.sessions()[0]!.resumedCount, 1);
      sim.postMessage({ kind: 'guild_at', content: 'live' });
      assert.equal((await again.next((f) => f.t === 'AT_MESSAGE_CREATE')).s, seen.s! + 101);
      again.close();
    });
  });

  test('malformed frames close with 4002/4001 and the gateway keeps serving', async () => {
    await withSim({ maxFrameBytes: 1024 }, async (sim) => {
      const cases: Array<[string, number]> = [['{not json', 4002], ['[1,2]', 4002], [JSON.stringify({ op: 'x' }), 4002], [JSON.stringify({ op: 42 }), 4001], [JSON.stringify({ op: 1, d: 'x'.repeat(5000) }), 4002]];
      for (const [frame, code] of cases) {
        const bot = await RawBot.connect(sim);
        bot.send(frame);
        assert.equal((await bot.closed).code, code, frame.slice(0, 20));
      }
      const ok = await RawBot.connect(sim);
      await ok.identify(`QQBot ${await token(sim)}`, AT);
      ok.close();
    });
  });

  test('a connection that stops heartbeating is closed with 4009 and stays resumable', async () => {
    await withSim({ heartbeatIntervalMs: 100, sessionTimeoutMs: 300 }, async (sim) => {
      const tok = `QQBot ${await token(sim)}`;
      const bot = await RawBot.connect(sim);
      const ready = await bot.identify(tok, AT);
      assert.equal((await bot.closed).code, 4009);
      const again = await RawBot.connect(sim);
      again.send({ op: 6, d: { token: tok, session_id: ready.d.session_id, seq: ready.s } });
      await again.next((f) => f.t === 'RESUMED');
      again.close();
    });
  });
});

describe('gateway faults', () => {
  let sim: Simulator;
  let tok: string;
  before(async () => {
    sim = await startSimulator({ sessionStartLimit: { total: 1000, maxConcurrency: 50 } });
    tok = `QQBot ${await token(sim)}`;
  });
  after(() => sim.close());

  async function session(shard: [number, number] = [0, 1]): Promise<{ bot: RawBot; ready: Frame }> {
    const bot = await RawBot.connect(sim);
    return { bot, ready: await bot.identify(tok, AT | GROUP_C2C, shard) };
  }

  async function resume(ready: Frame, seq: number): Promise<RawBot> {
    const bot = await RawBot.connect(sim);
    bot.send({ op: 6, d: { token: tok, session_id: ready.d.session_id, seq } });
    return bot;
  }

  test('close with a resumable code (4009): the client may resume', async () => {
    const { bot, ready } = await session([0, 2]);
    const other = await session([1, 2]);
    const res = await control(sim, 'POST', '/faults', { kind: 'close', code: 4009, shard: 0 });
    assert.equal(res.body.affected, 1);
    assert.equal((await bot.closed).code, 4009);
    assert.equal(other.bot.ws.readyState, WebSocket.OPEN, 'shard 1 untouched');
    const again = await resume(ready, ready.s!);
    await again.next((f) => f.t === 'RESUMED');
    again.close();
    other.bot.close();
  });

  test('close 4914 / 4915 end the session: resume is refused with 4006', async () => {
    for (const code of [4914, 4915]) {
      const { bot, ready } = await session();
      sim.fault({ kind: 'close', code, shard: 0 });
      assert.equal((await bot.closed).code, code);
      const again = await resume(ready, ready.s!);
      assert.equal((await again.closed).code, 4006);
    }
  });

  test('reconnect sends op 7; invalid_session sends op 9 with d and honours resumable', async () => {
    const a = await session();
    sim.fault({ kind: 'reconnect' });
    await a.bot.next((f) => f.op === 7);
    sim.fault({ kind: 'invalid_session', resumable: true });
    assert.equal((await a.bot.next((f) => f.op === 9)).d, true);
    a.bot.close();
    const resumed = await resume(a.ready, a.ready.s!);
    await resumed.next((f) => f.t === 'RESUMED');
    sim.fault({ kind: 'invalid_session', resumable: false });
    assert.equal((await resumed.next((f) => f.op === 9)).d, false);
    resumed.close();
    const refused = await resume(a.ready, a.ready.s!);
    assert.equal((await refused.closed).code, 4006);
  });

  test('stop_acks: heartbeats go unanswered on that connection only', async () => {
    const probe = async (bot: RawBot) => {
      // frames are handled in order: heartbeat, then an unknown opcode that closes the socket
      bot.send({ op: 1, d: null });
      bot.send({ op: 99 });
      assert.equal((await bot.closed).code, 4001);
      return bot.frames.filter((f) => f.op === 11).length;
    };
    const muted = await session();
    sim.fault({ kind: 'stop_acks' });
    const fresh = await session();
    assert.equal(await probe(muted.bot), 0);
    assert.equal(await probe(fresh.bot), 1);
  });

  test('drop: the socket dies without a close frame and the session is resumable, buffering meanwhile', async () => {
    const { bot, ready } = await session();
    sim.fault({ kind: 'drop' });
    assert.equal((await bot.closed).code, 1006);
    await waitFor(() => sim.sessions().find((s) => s.sessionId === ready.d.session_id)?.connected === false);
    const missed = sim.postMessage({ kind: 'c2c', content: 'while away' });
    const again = await resume(ready, ready.s!);
    const f = await again.next((x) => x.t === 'C2C_MESSAGE_CREATE');
    assert.equal(f.d.id, missed.id);
    await again.next((x) => x.t === 'RESUMED');
    const info = (await control(sim, 'GET', '/sessions')).body.find((s: any) => s.sessionId === ready.d.session_id);
    assert.deepEqual(Object.keys(info).sort(), ['appId', 'connected', 'intents', 'lastHeartbeatAt', 'resumedCount', 'seq', 'sessionId', 'shard']);
    assert.equal(info.connected, true);
    again.close();
  });
});

describe('control API', () => {
  let sim: Simulator;
  before(async () => { sim = await startSimulator({ bots: [{ appId: APP, secret: SECRET }, { appId: '1020000002', secret: 'second-secret' }] }); });
  after(() => sim.close());

  test('bad input answers 400 naming the field', async () => {
    const cases: Array<[string, string, unknown, string]> = [
      ['POST', '/messages', { content: 'x' }, 'kind'],
      ['POST', '/messages', { kind: 'guild_at' }, 'content'],
      ['POST', '/messages', { kind: 'guild_at', content: 'x', channel_id: '1' }, 'channel_id'],
      ['POST', '/messages', { kind: 'guild_at', content: 'x', appId: 'nobody' }, 'appId'],
      ['POST', '/messages', { kind: 'c2c', content: 'x', user: { name: 'x' } }, 'user'],
      ['POST', '/messages', '{broken', 'body'],
      ['POST', '/events', { d: {} }, 't'],
      ['POST', '/events', { t: 'GUILD_MEMBER_ADD' }, 'd'],
      ['POST', '/faults', { kind: 'explode' }, 'kind'],
      ['POST', '/faults', { kind: 'close', code: 1234 }, 'code'],
      ['POST', '/faults', { kind: 'invalid_session' }, 'resumable'],
      ['POST', '/faults', { kind: 'rate_limit', route: 'GET /nowhere', count: 1 }, 'route'],
      ['POST', '/faults', { kind: 'rate_limit', route: 'GET /gateway', count: 0 }, 'count'],
      ['POST', '/faults', { kind: 'drop', shard: -1 }, 'shard'],
      ['GET', '/outbox?since=abc', undefined, 'since'],
      ['POST', '/webhooks', { appId: APP, url: 'ftp://x' }, 'url'],
      ['POST', '/webhooks', { appId: 'nobody', url: 'http://127.0.0.1:1/' }, 'appId'],
      ['POST', '/world/channels', { name: 'x' }, 'guild_id'],
    ];
    for (const [method, path, body, field] of cases) {
      const res = await control(sim, method, path, body);
      assert.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)}`);
      assert.equal(res.body.field, field, `${method} ${path}`);
      assert.equal(typeof res.body.error, 'string');
    }
  });

  test('messages go to the chosen bot; events dispatch as-is; the stream carries outbox, events and sessions', async () => {
    const events: string[] = [];
    const stream = await fetch(`${sim.url}/_simulator/stream`);
    const reader = stream.body!.getReader();
    let streamed = '';
    const seen = (needle: string) => waitFor(async () => {
      while (!streamed.includes(needle)) {
        const { value } = await reader.read();
        streamed += new TextDecoder().decode(value);
      }
      return true;
    });
    const second = `QQBot ${await token(sim, '1020000002', 'second-secret')}`;
    const first = `QQBot ${await token(sim)}`;
    const b2 = await RawBot.connect(sim);
    await b2.identify(second, AT | (1 << 1));
    const b1 = await RawBot.connect(sim);
    await b1.identify(first, AT | (1 << 1));

    sim.on('event', (e: { t: string }) => events.push(e.t));

    const posted = (await control(sim, 'POST', '/messages', { kind: 'guild_at', content: 'for two', appId: '1020000002' })).body;
    const f = await b2.next((x) => x.t === 'AT_MESSAGE_CREATE');
    assert.equal(f.d.id, posted.id);
    assert.equal(f.id, posted.event_id);
    const ev = (await control(sim, 'POST', '/events', { t: 'GUILD_MEMBER_ADD', d: { guild_id: '1', user: { id: '5' } }, appId: APP })).body;
    assert.equal((await b1.next((x) => x.t === 'GUILD_MEMBER_ADD')).id, ev.event_id);
    assert.equal(b1.frames.filter((x) => x.t === 'AT_MESSAGE_CREATE').length, 0, 'bot 1 did not get bot 2\'s message');

    const dm = (await control(sim, 'POST', '/messages', { kind: 'direct', content: 'dm' })).body;
    assert.deepEqual(sim.outbox(), []);
    const reply = await api(sim, 'POST', `/channels/${f.d.channel_id}/messages`, second, { content: 'answer', msg_id: f.d.id });
    assert.equal(reply.status, 200);
    await seen('"answer"');
    await seen('event: session');
    await seen('GUILD_MEMBER_ADD');
    assert.ok(events.includes('DIRECT_MESSAGE_CREATE') && dm.id);
    await reader.cancel();
    b1.close();
    b2.close();
  });
});

describe('restart with exported state', () => {
  test('a session survives close() + startSimulator({ port, state }) and resumes with what was posted after the restart', async () => {
    let sim = await startSimulator({});
    const port = sim.port;
    const tok = `QQBot ${await token(sim)}`;
    const bot = await RawBot.connect(sim);
    const ready = await bot.identify(tok, AT);
    const state = JSON.parse(JSON.stringify(sim.exportState()));
    await sim.close();
    assert.equal((await bot.closed).code, 1006);
    sim = await startSimulator({ port, state });
    try {
      assert.equal(sim.port, port);
      assert.equal((await api(sim, 'GET', '/users/@me', tok)).status, 200, 'token still valid');
      const posted = sim.postMessage({ kind: 'guild_at', content: 'after restart' });
      const again = await RawBot.connect(sim);
      again.send({ op: 6, d: { token: tok, session_id: ready.d.session_id, seq: ready.s } });
      assert.equal((await again.next((f) => f.t === 'AT_MESSAGE_CREATE')).d.id, posted.id);
      await again.next((f) => f.t === 'RESUMED');
      again.close();
    } finally {
      await sim.close();
    }
  });
});

describe('webhook delivery', () => {
  test('validates with op 13, then delivers signed dispatches and retries on failure or {op:12,d:1}', async () => {
    const secret = 'webhook-secret-xyz';
    // the receiver derives the public key on its own, straight from §11.2
    const pub = createPublicKey(createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seedFromSecret(secret)]), format: 'der', type: 'pkcs8' }));
    const received: Array<{ body: any; headers: IncomingMessage['headers']; valid: boolean }> = [];
    const answers = [{ status: 500, body: 'oops' }, { status: 200, body: '{"op":12,"d":1}' }];
    const signer = new WebhookSigner(secret);
    const receiver = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const ts = String(req.headers['x-signature-timestamp']);
        const sig = Buffer.from(String(req.headers['x-signature-ed25519']), 'hex');
        const valid = edVerify(null, Buffer.concat([Buffer.from(ts), raw]), pub, sig);
        const body = JSON.parse(String(raw));
        received.push({ body, headers: req.headers, valid });
        if (body.op === 13) {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ plain_token: body.d.plain_token, signature: signer.sign(body.d.event_ts, body.d.plain_token) }));
          return;
        }
        const answer = answers.shift() ?? { status: 200, body: '{"op":12,"d":0}' };
        res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/callback`;
    const sim = await startSimulator({ bots: [{ appId: '777', secret }] });
    try {
      const reg = await control(sim, 'POST', '/webhooks', { appId: '777', url });
      assert.equal(reg.status, 200, JSON.stringify(reg.body));
      const posted = sim.postMessage({ kind: 'group_at', content: 'via webhook', appId: '777' });
      await waitFor(() => sim.webhookLog().some((e) => e.kind === 'dispatch' && e.outcome === 'ok'));
      const log = (await control(sim, 'GET', '/webhooks/log')).body;
      assert.deepEqual(log.map((e: any) => [e.kind, e.status, e.outcome]), [['validation', 200, 'ok'], ['dispatch', 500, 'retry'], ['dispatch', 200, 'retry'], ['dispatch', 200, 'ok']]);
      assert.equal(log[2].body, '{"op":12,"d":1}');
      const dispatches = received.filter((r) => r.body.op === 0);
      assert.equal(dispatches.length, 3);
      for (const r of received) {
        assert.equal(r.valid, true);
        assert.equal(r.headers['user-agent'], 'QQBot-Callback');
        assert.equal(r.headers['x-bot-appid'], '777');
      }
      assert.deepEqual(new Set(dispatches.map((r) => r.body.id)), new Set([`${dispatches[0]!.body.id}`]));
      assert.equal(dispatches[0]!.body.t, 'GROUP_AT_MESSAGE_CREATE');
      assert.equal(dispatches[0]!.body.d.id, posted.id);
    } finally {
      await sim.close();
      await new Promise((r) => receiver.close(r));
    }
  });

  test('registration fails (400, field url) when the validation answer is not signed with the secret', async () => {
    const receiver = createServer((req, res) => {
      let raw = '';
      req.on('data', (c) => { raw += c; });
      req.on('end', () => {
        const body = JSON.parse(raw);
        const forged = new WebhookSigner('some-other-secret').sign(body.d.event_ts, body.d.plain_token);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ plain_token: body.d.plain_token, signature: forged }));
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const sim = await startSimulator({});
    try {
      const res = await control(sim, 'POST', '/webhooks', { appId: APP, url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/` });
      assert.equal(res.status, 400);
      assert.equal(res.body.field, 'url');
      assert.deepEqual(sim.webhookLog().map((e) => e.outcome), ['rejected']);
    } finally {
      await sim.close();
      await new Promise((r) => receiver.close(r));
    }
  });
});

describe('signing and helpers', () => {
  test('ed25519 from the secret reproduces the protocol vectors (§11.2, §11.3)', () => {
    assert.equal(seedFromSecret('naOC0ocQE3shWLAfffVLB1rhYPG7').toString(), 'naOC0ocQE3shWLAfffVLB1rhYPG7naOC');
    assert.equal(new WebhookSigner('naOC0ocQE3shWLAfffVLB1rhYPG7').publicKeyHex(), 'd7c362fe78aef81ff23287b493628b5db02a3c4fe30b215e4d19609b5d76673a');
    const signer = new WebhookSigner('DG5g3B4j9X2KOErG');
    const sig = '87befc99c42c651b3aac0278e71ada338433ae26fcb24307bdc5ad38c1adc2d01bcfcadc0842edac85e85205028a1132afe09280305f13aa6909ffc2d652c706';
    assert.equal(signer.sign('1725442341', 'Arq0D5A61EgUu4OxUvOp'), sig);
    assert.equal(signer.verify('1725442341', 'Arq0D5A61EgUu4OxUvOp', sig), true);
    assert.equal(signer.verify('1725442342', 'Arq0D5A61EgUu4OxUvOp', sig), false);
  });

  test('parseBotFlag reads appId:secret[:token] and its errors never echo the secret', () => {
    assert.deepEqual(parseBotFlag('123:abc'), { appId: '123', secret: 'abc' });
    assert.deepEqual(parseBotFlag('123:abc:tok'), { appId: '123', secret: 'abc', token: 'tok' });
    for (const bad of ['123', '123:', ':sekrit', '123:sekrit:', '1:sekrit:t:x']) {
      assert.throws(() => parseBotFlag(bad), (err: Error) => !err.message.includes('sekrit') && !JSON.stringify((err as any).context).includes('sekrit'));
    }
  });

  test('with printCredentials off, a bot secret and token never reach the log, even through failures', async () => {
    const lines: string[] = [];
    const destination = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
    const secret = `s-${createHash('sha1').update(String(Math.random())).digest('hex')}`;
    await withSim({ bots: [{ appId: '42', secret, token: 'legacy-xyz' }], printCredentials: false, logger: createLogger({ destination, level: 'debug' }) }, async (sim) => {
      const tok = await token(sim, '42', secret);
      const bot = await RawBot.connect(sim);
      bot.send({ op: 2, d: { token: `QQBot ${tok}x`, intents: AT } });
      await bot.closed;
      await api(sim, 'GET', '/users/@me', `Bot 42.legacy-xyz-wrong`);
    });
    const all = lines.join('');
    assert.ok(all.includes('42'), 'the bot is logged');
    assert.ok(!all.includes(secret) && !all.includes('legacy-xyz'));
  });
});

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
