import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey, verify as edVerify } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { request, type Dispatcher } from 'undici';
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
  return (await api(sim, 'POST', '/app/getAppAccessToken', undefined, { appId, clientSecret: secret })).body.access_token;
}

/**
 * One request on its own connection (`reset`): tests restart simulators on the same port, and a
 * pooled keep-alive socket to the previous instance would fail the first request after a restart.
 */
async function api(sim: Simulator, method: string, path: string, auth: string | undefined, body?: unknown): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (auth !== undefined) headers.authorization = auth;
  const res = await request(`${sim.url}${path}`, { method: method as Dispatcher.HttpMethod, headers, reset: true, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
  const text = await res.body.text();
  const responseHeaders = new Headers();
  for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') responseHeaders.set(k, v);
  return { status: res.statusCode, body: text ? JSON.parse(text) : undefined, headers: responseHeaders };
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
    // 3 s: the first three requests below must finish inside the lifetime, even on a busy machine
    await withSim({ tokenLifetimeSec: 3 }, async (sim) => {
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
    sim = await startSimulator({});
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

  test('channel messages: content required, msg_id must exist, permission enforced, proactive refused by default', async () => {
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
    assert.equal(proactive.status, 400);
    assert.equal(proactive.body.code, 304046, 'proactive push is switched off (§14)');
    const out = (await control(sim, 'GET', `/outbox?since=${before}`)).body;
    assert.deepEqual(out.map((e: any) => [e.body.content, e.passive, e.msg_id ?? null]), [['pong', true, posted.id]]);
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

    await withSim({ replyWindowMs: { group: 1 } }, async (short) => {
      const late = short.postMessage({ kind: 'group_at', content: 'late', group_openid: 'GROUPTEST1' });
      await new Promise((r) => setTimeout(r, 50)); // past the 1 ms window
      const expired = await api(short, 'POST', path, `QQBot ${await token(short)}`, { msg_type: 0, content: 'a', msg_id: late.id });
      assert.equal(expired.body.code, 304027);
    });

    const c2c = sim.postMessage({ kind: 'c2c', content: 'hi', user: { id: 'USERTEST1' } });
    const up = await api(sim, 'POST', '/v2/users/USERTEST1/files', auth, { file_type: 1, url: 'https://example.invalid/a.png', srv_send_msg: false });
    assert.equal(typeof up.body.file_info, 'string');
    const media = await api(sim, 'POST', '/v2/users/USERTEST1/messages', auth, { msg_type: 7, content: ' ', media: { file_info: up.body.file_info }, msg_id: c2c.id });
    assert.equal(media.status, 200);
    assert.equal(typeof media.body.id, 'string');
    // a C2C upload is not valid for a group
    const answer = sim.postMessage({ kind: 'group_at', content: 'media?', group_openid: 'GROUPTEST1' });
    const cross = await api(sim, 'POST', path, auth, { msg_type: 7, content: ' ', media: { file_info: up.body.file_info }, msg_id: answer.id });
    assert.equal(cross.status, 400);
    assert.match(cross.body.message, /file_info/);
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

  test('a guild channel takes 5 messages per second (§14): the 6th answers 429 with 20028 and uses no reply; another channel is not affected', async () => {
    await withSim({ channelSendRate: { messages: 5, perMs: 300 } }, async (s) => {
      const tok = `QQBot ${await token(s)}`;
      const { ids } = s.postBurst({ kind: 'guild_at', count: 12, targets: 2 });
      const channels: string[] = [];
      for (const guild of ['7000000000', '7000000001']) channels.push((await api(s, 'GET', `/guilds/${guild}/channels`, tok)).body[0].id);
      const send = (channel: string, msgId: string) => api(s, 'POST', `/channels/${channel}/messages`, tok, { content: 'r', msg_id: msgId });
      // ids[0], ids[2], … went to the first channel
      const first = ids.filter((_, i) => i % 2 === 0);
      const results = [];
      for (const msgId of first) results.push(await send(channels[0]!, msgId));
      assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200, 429]);
      assert.equal(results[5]!.body.code, 20028);
      assert.equal((await send(channels[1]!, ids[1]!)).status, 200, 'the other channel has its own budget');
      await new Promise((resolve) => setTimeout(resolve, 320));
      assert.equal((await send(channels[0]!, first[5]!)).status, 200, 'the refused message can be answered once the window moved on');
      const answered = s.outbox().filter((e) => e.msg_id === first[5]);
      assert.equal(answered.length, 1);
      assert.equal(typeof answered[0]!.latencyMs, 'number');
    });
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
    // the timeout also runs between hello and identify: leave room for a busy machine to identify first
    await withSim({ heartbeatIntervalMs: 100, sessionTimeoutMs: 1500 }, async (sim) => {
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
      ['POST', '/messages/burst', { kind: 'guild_at', count: 0 }, 'count'],
      ['POST', '/messages/burst', { kind: 'group_at', count: 3, targets: 4 }, 'targets'],
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

describe('session_start_limit', () => {
  test('an identify with no starts remaining closes with 4008; remaining survives a restart and resets after reset_after', async () => {
    let sim = await startSimulator({ sessionStartLimit: { total: 3, remaining: 2, maxConcurrency: 10, resetAfterMs: 60_000 } });
    try {
      const tok = `QQBot ${await token(sim)}`;
      const limit = async () => (await api(sim, 'GET', '/gateway/bot', tok)).body.session_start_limit;
      assert.deepEqual({ ...(await limit()), reset_after: 0 }, { total: 3, remaining: 2, reset_after: 0, max_concurrency: 10 });
      assert.ok((await limit()).reset_after > 0 && (await limit()).reset_after <= 60_000);
      const a = await RawBot.connect(sim);
      await a.identify(tok, AT);
      assert.equal((await limit()).remaining, 1);
      const state = JSON.parse(JSON.stringify(sim.exportState()));
      const port = sim.port;
      await sim.close();
      sim = await startSimulator({ port, state, sessionStartLimit: { total: 3, remaining: 2, maxConcurrency: 10, resetAfterMs: 60_000 } });
      assert.equal((await limit()).remaining, 1, 'the count is not refilled by a restart');
      const b = await RawBot.connect(sim);
      await b.identify(tok, AT);
      const refused = await RawBot.connect(sim);
      refused.send({ op: 2, d: { token: tok, intents: AT, shard: [0, 1] } });
      const closed = await refused.closed;
      assert.equal(closed.code, 4008);
      assert.match(closed.reason, /session_start_limit/);
      assert.equal((await limit()).remaining, 0);
      const last = sim.sessionLog().at(-1)!;
      assert.deepEqual([last.kind, last.outcome, last.closeCode], ['identify', 'rejected', 4008]);
      a.close();
      b.close();
    } finally {
      await sim.close();
    }
  });

  test('reset_after runs out: remaining goes back to total', async () => {
    await withSim({ sessionStartLimit: { total: 1, maxConcurrency: 10, resetAfterMs: 300 } }, async (sim) => {
      const tok = `QQBot ${await token(sim)}`;
      const first = await RawBot.connect(sim);
      await first.identify(tok, AT);
      const refused = await RawBot.connect(sim);
      refused.send({ op: 2, d: { token: tok, intents: AT, shard: [0, 1] } });
      assert.equal((await refused.closed).code, 4008);
      await waitFor(async () => (await api(sim, 'GET', '/gateway/bot', tok)).body.session_start_limit.remaining === 1);
      const again = await RawBot.connect(sim);
      await again.identify(tok, AT);
      first.close();
      again.close();
    });
  });

  test('the default budget (1000) outlasts many sessions; resumes do not spend it', async () => {
    await withSim({ sessionStartLimit: { total: 1000, maxConcurrency: 100 } }, async (sim) => {
      const tok = `QQBot ${await token(sim)}`;
      const bot = await RawBot.connect(sim);
      const ready = await bot.identify(tok, AT);
      for (let i = 0; i < 5; i++) {
        bot.ws.terminate();
        const again = await RawBot.connect(sim);
        again.send({ op: 6, d: { token: tok, session_id: ready.d.session_id, seq: ready.s } });
        await again.next((f) => f.t === 'RESUMED');
        again.close();
        await waitFor(() => sim.sessions().every((x) => !x.connected));
      }
      assert.equal(sim.exportState().gateway.startLimits[APP]!.remaining, 999);
    });
  });
});

describe('proactive messages (§14)', () => {
  const sendAll = async (sim: Simulator, auth: string, path: string, body: Record<string, unknown>, n: number) => {
    const statuses: Array<number | string> = [];
    for (let i = 0; i < n; i++) {
      const res = await api(sim, 'POST', path, auth, { ...body, content: `p${i}` });
      statuses.push(res.status === 200 ? 200 : res.body.code);
    }
    return statuses;
  };

  test('default off: every scene refuses unsolicited sends with its code; passive replies still work', async () => {
    await withSim({}, async (sim) => {
      const auth = `QQBot ${await token(sim)}`;
      const world = (await control(sim, 'GET', '/world')).body;
      const general = world.guilds[0].channels.find((c: any) => c.name === 'general');
      const dm = await api(sim, 'POST', '/users/@me/dms', auth, { recipient_id: '20000000000000001', source_guild_id: world.guilds[0].id });
      const cases: Array<[string, Record<string, unknown>, number]> = [
        [`/channels/${general.id}/messages`, { content: 'x' }, 304046],
        [`/dms/${dm.body.guild_id}/messages`, { content: 'x' }, 304048],
        ['/v2/groups/SIMGROUP0000000000000000000000001/messages', { msg_type: 0, content: 'x' }, 40034102],
        ['/v2/users/SIMUSER00000000000000000000000001/messages', { msg_type: 0, content: 'x' }, 40034102],
        ['/v2/users/SIMUSER00000000000000000000000001/files', { file_type: 1, url: 'https://example.invalid/a.png', srv_send_msg: true }, 40034102],
      ];
      for (const [path, body, code] of cases) {
        const res = await api(sim, 'POST', path, auth, body);
        assert.equal(res.status, 400, path);
        assert.equal(res.body.code, code, path);
        assert.equal(res.body.trace_id, res.headers.get('x-tps-trace-id'));
      }
      // an upload that is not sent is not a message
      assert.equal((await api(sim, 'POST', '/v2/users/SIMUSER00000000000000000000000001/files', auth, { file_type: 1, url: 'https://example.invalid/a.png', srv_send_msg: false })).status, 200);
      const posted = sim.postMessage({ kind: 'c2c', content: 'hi' });
      assert.equal((await api(sim, 'POST', '/v2/users/SIMUSER00000000000000000000000001/messages', auth, { msg_type: 0, content: 'reply', msg_id: posted.id })).status, 200);
      assert.deepEqual(sim.outbox().map((e) => e.body.content), ['reply']);
    });
  });

  test('quota: the platform numbers per scene, with the documented codes; a refused send uses no quota', async () => {
    // quotas, not the per-channel rate, are under test here
    await withSim({ proactive: 'quota', proactiveQuotas: { dmPerDay: 3 }, channelSendRate: false }, async (sim) => {
      const auth = `QQBot ${await token(sim)}`;
      const c2c = '/v2/users/SIMUSER00000000000000000000000001/messages';
      assert.deepEqual(await sendAll(sim, auth, c2c, { msg_type: 0 }, 5), [200, 200, 200, 200, 22009]);
      const group = '/v2/groups/SIMGROUP0000000000000000000000001/messages';
      assert.deepEqual(await sendAll(sim, auth, group, { msg_type: 0 }, 5), [200, 200, 200, 200, 22009]);

      const guild = (await control(sim, 'GET', '/world')).body.guilds[1];
      const extra = [];
      for (let i = 0; i < 2; i++) extra.push((await control(sim, 'POST', '/world/channels', { guild_id: guild.id, name: `extra-${i}` })).body.id);
      const [c1, c2, c3] = [guild.channels[0].id, extra[0], extra[1]];
      const perChannel = await sendAll(sim, auth, `/channels/${c1}/messages`, {}, 21);
      assert.deepEqual(perChannel, [...Array(20).fill(200), 304045]);
      assert.deepEqual(await sendAll(sim, auth, `/channels/${c2}/messages`, {}, 1), [200]);
      assert.deepEqual(await sendAll(sim, auth, `/channels/${c3}/messages`, {}, 1), [304047], 'a third channel of the same guild on the same day');
      assert.deepEqual(await sendAll(sim, auth, `/channels/${c2}/messages`, {}, 1), [200], 'the two channels already used stay open');

      const guildId = guild.id;
      const dms = [];
      for (const user of ['30000000000000001', '30000000000000002']) dms.push((await api(sim, 'POST', '/users/@me/dms', auth, { recipient_id: user, source_guild_id: guildId })).body.guild_id);
      assert.deepEqual(await sendAll(sim, auth, `/dms/${dms[0]}/messages`, {}, 3), [200, 200, 304049]);
      assert.deepEqual(await sendAll(sim, auth, `/dms/${dms[1]}/messages`, {}, 2), [200, 304050], 'the bot-wide daily DM total (3 here)');
      assert.equal(sim.outbox().filter((e) => !e.passive).length, 4 + 4 + 20 + 2 + 3);
    });
  });

  test('quota counts survive a restart with exported state; allowed accepts and counts', async () => {
    let sim = await startSimulator({ proactive: 'quota', proactiveQuotas: { c2cPerUserPerMonth: 1 } });
    try {
      const auth = `QQBot ${await token(sim)}`;
      const c2c = '/v2/users/SIMUSER00000000000000000000000001/messages';
      assert.deepEqual(await sendAll(sim, auth, c2c, { msg_type: 0 }, 1), [200]);
      const state = JSON.parse(JSON.stringify(sim.exportState()));
      const port = sim.port;
      await sim.close();
      sim = await startSimulator({ port, state, proactive: 'quota', proactiveQuotas: { c2cPerUserPerMonth: 1 } });
      assert.deepEqual(await sendAll(sim, auth, c2c, { msg_type: 0 }, 1), [22009]);
      await sim.close();
      sim = await startSimulator({ port, state, proactive: 'allowed' });
      assert.deepEqual(await sendAll(sim, auth, c2c, { msg_type: 0 }, 6), [200, 200, 200, 200, 200, 200]);
      const counts = (await control(sim, 'GET', '/info')).body.proactiveCounts;
      assert.equal(Object.entries(counts).find(([k]) => k.includes('|c2c|SIMUSER'))?.[1], 7);
    } finally {
      await sim.close();
    }
  });

  test('bad proactive options are refused at start', async () => {
    await assert.rejects(startSimulator({ proactive: 'sometimes' as never }), { code: 'SIMULATOR_CONFIG' });
    await assert.rejects(startSimulator({ proactiveQuotas: { dmPerDay: -1 } }), { code: 'SIMULATOR_CONFIG' });
    await assert.rejects(startSimulator({ sessionStartLimit: { total: 2, remaining: 3, maxConcurrency: 1 } }), { code: 'SIMULATOR_CONFIG' });
  });
});

describe('world across a restart', () => {
  test('guilds, channels, groups and users edited in are kept by exportState, and still route to their shard', async () => {
    let sim = await startSimulator({});
    try {
      const guild = (await control(sim, 'POST', '/world/guilds', { id: String((77n << 22n) + 3n), name: 'kept' })).body;
      const channel = (await control(sim, 'POST', '/world/channels', { guild_id: guild.id, name: 'quiet', botCanSpeak: false })).body;
      await control(sim, 'POST', '/world/groups', { group_openid: 'KEPTGROUP' });
      await control(sim, 'POST', '/world/users', { openid: 'KEPTUSER' });
      const auth = `QQBot ${await token(sim)}`;
      const role = (await api(sim, 'POST', `/guilds/${guild.id}/roles`, auth, { name: 'keeper' })).body;
      const before = (await control(sim, 'GET', '/world')).body;
      const state = JSON.parse(JSON.stringify(sim.exportState()));
      const port = sim.port;
      await sim.close();
      sim = await startSimulator({ port, state });
      assert.deepEqual((await control(sim, 'GET', '/world')).body, before);
      assert.equal((await api(sim, 'GET', `/guilds/${guild.id}`, auth)).body.name, 'kept');
      assert.ok((await api(sim, 'GET', `/guilds/${guild.id}/roles`, auth)).body.roles.some((r: any) => r.id === role.role_id));
      const denied = await api(sim, 'POST', `/channels/${channel.id}/messages`, auth, { content: 'x' });
      assert.equal(denied.status, 403, 'botCanSpeak is kept too');
      const group = sim.postMessage({ kind: 'group_at', content: 'hi', group_openid: 'KEPTGROUP' });
      assert.equal((await api(sim, 'POST', '/v2/groups/KEPTGROUP/messages', auth, { msg_type: 0, content: 'ok', msg_id: group.id })).status, 200);
      // a state without a world (older exports) still seeds one
      await sim.close();
      const { world: _dropped, ...older } = state;
      sim = await startSimulator({ port, state: older });
      assert.equal((await api(sim, 'GET', `/guilds/${guild.id}`, auth)).status, 404);
      assert.equal((await control(sim, 'GET', '/world')).body.guilds.length, 4);
    } finally {
      await sim.close();
    }
  });
});

describe('hardening', () => {
  /** One request with the Host header and content type given (fetch and undici set Host themselves). */
  const raw = (sim: Simulator, method: string, path: string, headers: Record<string, string>, body?: string) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: sim.port, method, path, headers, agent: false }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.end(body);
    });

  test('the control API answers only requests addressed to this machine: a DNS-rebinding page gets no tokens', async () => {
    await withSim({ allowedHosts: ['Simulator'] }, async (sim) => {
      await token(sim);
      const at = (host: string) => raw(sim, 'GET', '/_simulator/state', { host: `${host}:${sim.port}` });
      for (const host of ['evil.example', 'localhost.', '127.0.0.1.nip.io', 'localhost.evil.example']) {
        const answer = await at(host);
        assert.equal(answer.status, 403, host);
        assert.equal(JSON.parse(answer.text).field, 'host');
        assert.doesNotMatch(answer.text, /access_token|tokens/);
      }
      assert.equal((await raw(sim, 'GET', '/_simulator/stream', { host: 'evil.example' })).status, 403, 'the live stream too');
      for (const host of ['127.0.0.1', 'localhost', '[::1]', '192.0.2.7', 'simulator', 'SIMULATOR']) {
        assert.equal((await at(host)).status, 200, host);
      }
      // the platform side is not the control API: bots may address the simulator by any name
      const gateway = await raw(sim, 'GET', '/gateway', { host: 'simulator.internal', authorization: `QQBot ${await token(sim)}` });
      assert.equal(gateway.status, 200);
    });
  });

  test('the control API reads bodies only as application/json, which another origin cannot send without a preflight', async () => {
    await withSim({}, async (sim) => {
      const host = `127.0.0.1:${sim.port}`;
      const body = JSON.stringify({ kind: 'c2c', content: 'forged' });
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', undefined]) {
        const answer = await raw(sim, 'POST', '/_simulator/messages', { host, ...(type ? { 'content-type': type } : {}) }, body);
        assert.equal(answer.status, 415, String(type));
        assert.equal(JSON.parse(answer.text).field, 'content-type');
      }
      assert.equal((await control(sim, 'GET', '/outbox')).body.length, 0);
      assert.equal(sim.exportState().nextEventId, 1, 'no event was posted');
      assert.equal((await raw(sim, 'POST', '/_simulator/messages', { host, 'content-type': 'application/json; charset=utf-8' }, body)).status, 200);
    });
  });

  test('a deeply nested body is refused (400) and cannot poison the outbox, the stream or the state', async () => {
    await withSim({}, async (sim) => {
      const auth = `QQBot ${await token(sim)}`;
      const posted = sim.postMessage({ kind: 'guild_at', content: 'deep?' });
      const channel = (await control(sim, 'GET', '/world')).body.guilds[0].channels.find((c: any) => c.name === 'general').id;
      const deep = `${'['.repeat(6000)}${']'.repeat(6000)}`;
      const res = await fetch(`${sim.url}/channels/${channel}/messages`, {
        method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' },
        body: `{"content":"x","msg_id":${JSON.stringify(posted.id)},"embed":{"title":"t","fields":${deep}}}`,
      });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { code: number }).code, 40034001);
      assert.equal((await control(sim, 'GET', '/outbox')).status, 200);
      assert.doesNotThrow(() => JSON.stringify(sim.exportState()));
      const ev = await fetch(`${sim.url}/_simulator/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"t":"GUILD_MEMBER_ADD","d":${deep}}` });
      assert.equal(ev.status, 400);
      assert.equal(((await ev.json()) as { field: string }).field, 'body');
    });
  });

  test('an event that cannot be serialised leaves no gap in a session\'s s', async () => {
    await withSim({}, async (sim) => {
      const bot = await RawBot.connect(sim);
      const ready = await bot.identify(`QQBot ${await token(sim)}`, GUILDS | (1 << 1));
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      assert.throws(() => sim.dispatchEvent(APP, 'GUILD_MEMBER_ADD', cyclic), TypeError);
      sim.dispatchEvent(APP, 'GUILD_MEMBER_ADD', { guild_id: '1' });
      assert.equal((await bot.next((f) => f.t === 'GUILD_MEMBER_ADD')).s, ready.s! + 1);
      bot.close();
    });
  });

  test('identify with intents beyond 31 bits closes with 4013 (bitwise checks see only the low 32 bits)', async () => {
    await withSim({ sessionStartLimit: { total: 100, maxConcurrency: 10 } }, async (sim) => {
      const tok = `QQBot ${await token(sim)}`;
      for (const intents of [2 ** 32 + AT, 2 ** 31, Number.MAX_SAFE_INTEGER]) {
        const bot = await RawBot.connect(sim);
        bot.send({ op: 2, d: { token: tok, intents, shard: [0, 1] } });
        assert.equal((await bot.closed).code, 4013, String(intents));
      }
    });
  });

  test('a text frame with invalid UTF-8 closes with 4002', async () => {
    await withSim({}, async (sim) => {
      const bot = await RawBot.connect(sim);
      bot.ws.send(Buffer.from([0x7b, 0x22, 0x6f, 0x70, 0x22, 0x3a, 0x31, 0x2c, 0x22, 0x64, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), { binary: false });
      assert.equal((await bot.closed).code, 4002);
    });
  });

  test('an upgrade request with a target the URL parser refuses is answered 400, not a crash', async () => {
    await withSim({}, async (sim) => {
      const upgrade = (target: string) => `GET ${target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
      assert.match(await rawHttp(sim.port, upgrade('http://[')), /^HTTP\/1\.1 400 /);
      assert.match(await rawHttp(sim.port, upgrade('/elsewhere')), /^HTTP\/1\.1 404 /);
      const bot = await RawBot.connect(sim);
      await bot.identify(`QQBot ${await token(sim)}`, AT);
      bot.close();
    });
  });

  test('a stream consumer that stops reading is cut off instead of buffered for without bound', async () => {
    await withSim({}, async (sim) => {
      const stream = await fetch(`${sim.url}/_simulator/stream`);
      const reader = stream.body!.getReader();
      await reader.read(); // the hello event: the stream is open
      // 40 × 512 KiB of events, never read by this client
      for (let i = 0; i < 40; i++) sim.postMessage({ kind: 'c2c', content: 'x'.repeat(512 * 1024) });
      // reading now drains what was in flight, then the stream ends (or errors) instead of going on
      let ended = false;
      for (;;) {
        let timer: NodeJS.Timeout | undefined;
        const quiet = new Promise<'quiet'>((resolve) => { timer = setTimeout(() => resolve('quiet'), 5000); });
        const next = await Promise.race([reader.read().then((x) => x.done, () => true), quiet]);
        clearTimeout(timer);
        if (next === 'quiet') break; // nothing for 5 s and not ended: the server kept it open
        if (next) { ended = true; break; }
      }
      if (!ended) await reader.cancel();
      assert.equal(ended, true, 'the server ended the stream');
      assert.equal((await control(sim, 'GET', '/info')).status, 200);
    });
  });

  test('re-registering a webhook while a delivery is in flight does not stall later deliveries', async () => {
    const secret = 'rereg-secret';
    const signer = new WebhookSigner(secret);
    let release: (() => void) | undefined;
    const held = new Promise<void>((r) => { release = r; });
    let dispatches = 0;
    const receiver = createServer((req, res) => {
      let raw = '';
      req.on('data', (c) => { raw += c; });
      req.on('end', () => {
        const body = JSON.parse(raw);
        if (body.op === 13) {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ plain_token: body.d.plain_token, signature: signer.sign(body.d.event_ts, body.d.plain_token) }));
          return;
        }
        const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"op":12,"d":0}');
        if (++dispatches === 1) void held.then(answer);
        else answer();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/cb`;
    const sim = await startSimulator({ bots: [{ appId: '778', secret }] });
    try {
      assert.equal((await control(sim, 'POST', '/webhooks', { appId: '778', url })).status, 200);
      sim.postMessage({ kind: 'c2c', content: 'first', appId: '778' });
      await waitFor(() => dispatches === 1);
      assert.equal((await control(sim, 'POST', '/webhooks', { appId: '778', url: `${url}?again` })).status, 200);
      release!();
      const second = sim.postMessage({ kind: 'c2c', content: 'second', appId: '778' });
      await waitFor(() => sim.webhookLog().some((e) => e.kind === 'dispatch' && e.outcome === 'ok' && e.event_id === second.event_id));
      assert.ok(sim.webhookLog().some((e) => e.event_id === second.event_id && e.url.endsWith('?again')));
    } finally {
      await sim.close();
      await new Promise((r) => receiver.close(r));
    }
  });
});

/** mulberry32: a small seeded generator, so every fuzz run sends the same inputs */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random JSON-able junk. Strings avoid ':' and '/', so none of them can be a URL the simulator would call. */
function junkValue(r: () => number, depth = 0): unknown {
  const pick = Math.floor(r() * (depth > 3 ? 8 : 11));
  const str = (n: number) => Array.from({ length: n }, () => 'aZ09 _-.é漢\u0000"\\{}[]'[Math.floor(r() * 20)]).join('');
  switch (pick) {
    case 0: return Math.floor(r() * 2 ** 40) - 2 ** 39;
    case 1: return [1e300, -1e300, 0.5, -0, 2 ** 53 + 2, -1][Math.floor(r() * 6)];
    case 2: return r() < 0.5;
    case 3: return null;
    case 4: return str(Math.floor(r() * 12));
    case 5: return str(20_000 + Math.floor(r() * 20_000));
    case 6: return '';
    case 7: return str(3);
    case 8: return Array.from({ length: Math.floor(r() * 4) }, () => junkValue(r, depth + 1));
    case 9: return Object.fromEntries(Array.from({ length: Math.floor(r() * 4) }, () => [str(4), junkValue(r, depth + 1)]));
    default: {
      let v: unknown = 'core';
      for (let i = Math.floor(r() * 60); i > 0; i--) v = r() < 0.5 ? [v] : { k: v };
      return v;
    }
  }
}

/** Junk of a type other than `type`, for "wrong type" cases. */
function junkNot(r: () => number, type: 'string' | 'number' | 'boolean' | 'object'): unknown {
  for (;;) {
    const v = junkValue(r);
    const t = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
    if (t !== type) return v;
  }
}

const MALFORMED = ['{', '{"kind":', '[1,', 'nul', '"\\u12"', '{"a":1,}', "{'a':1}", '\u0000', '{"kind":"c2c","content":"x"', 'NaN', '--', '{"a":1}{"b":2}'];
const deepArray = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;

describe('fuzz', () => {
  test('control API: malformed JSON, wrong types, huge strings and deep nesting answer 400 naming the field; nothing else breaks', async () => {
    await withSim({ bots: [{ appId: APP, secret: SECRET }, { appId: '1020000002', secret: 'second-secret' }] }, async (sim) => {
      const r = prng(20250421);
      // endpoint → a valid body, and the fields whose wrong type must be reported by name
      const posts: Array<{ path: string; valid: Record<string, unknown>; fields: Record<string, 'string' | 'number' | 'boolean' | 'object'> }> = [
        { path: '/messages', valid: { kind: 'c2c', content: 'x' }, fields: { kind: 'string', content: 'string', guild_id: 'string', channel_id: 'string', group_openid: 'string', appId: 'string', user: 'object' } },
        { path: '/events', valid: { t: 'GUILD_MEMBER_ADD', d: {} }, fields: { t: 'string', appId: 'string' } },
        { path: '/faults', valid: { kind: 'close', code: 4009 }, fields: { kind: 'string', code: 'number', shard: 'number', appId: 'string' } },
        { path: '/faults', valid: { kind: 'invalid_session', resumable: true }, fields: { resumable: 'boolean' } },
        { path: '/faults', valid: { kind: 'rate_limit', route: 'GET /gateway', count: 1 }, fields: { route: 'string', count: 'number', retryAfterSec: 'number' } },
        { path: '/webhooks', valid: { appId: APP, url: 'http://127.0.0.1:1/' }, fields: { appId: 'string' } },
        { path: '/webhooks', valid: { appId: APP }, fields: { url: 'string' } },
        { path: '/world/guilds', valid: {}, fields: { id: 'string', name: 'string' } },
        { path: '/world/channels', valid: { guild_id: '1' }, fields: { guild_id: 'string', type: 'number', botCanSpeak: 'boolean', id: 'string', name: 'string' } },
        { path: '/world/groups', valid: { group_openid: 'G' }, fields: { group_openid: 'string' } },
        { path: '/world/users', valid: { openid: 'U' }, fields: { openid: 'string' } },
      ];
      const expect400 = async (path: string, body: string, field: string | RegExp, label: string) => {
        const res = await request(`${sim.url}/_simulator${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, reset: true, signal: AbortSignal.timeout(10_000) });
        const text = await res.body.text();
        assert.equal(res.statusCode, 400, `${label} ${path}: ${text.slice(0, 200)}`);
        const answer = JSON.parse(text) as { error: unknown; field: unknown };
        assert.equal(typeof answer.error, 'string', label);
        if (typeof field === 'string') assert.equal(answer.field, field, `${label} ${path} ${body.slice(0, 120)}`);
        else assert.match(String(answer.field), field, `${label} ${path} ${body.slice(0, 120)}`);
      };
      let cases = 0;
      for (const { path, valid, fields } of posts) {
        for (const bad of MALFORMED) { await expect400(path, bad, 'body', 'malformed'); cases++; }
        await expect400(path, deepArray(5000), 'body', 'deep array');
        await expect400(path, `{"k":${'{"k":'.repeat(3000)}1${'}'.repeat(3000)}}`, 'body', 'deep object');
        await expect400(path, JSON.stringify({ ...valid, pad: 'x'.repeat((1 << 20) + 1) }), 'body', 'oversized');
        cases += 3;
        for (const [field, type] of Object.entries(fields)) {
          for (let i = 0; i < 6; i++) {
            await expect400(path, JSON.stringify({ ...valid, [field]: junkNot(r, type) }), new RegExp(`^${field}`), 'wrong type');
            cases++;
          }
        }
        // anything at all: a 200 or a 400, never a 5xx
        for (let i = 0; i < 12; i++) {
          const body = r() < 0.5 ? JSON.stringify(junkValue(r)) : JSON.stringify({ ...valid, ...Object.fromEntries(Object.keys(fields).filter(() => r() < 0.5).map((f) => [f, junkValue(r)])) });
          const res = await request(`${sim.url}/_simulator${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, reset: true, signal: AbortSignal.timeout(10_000) });
          const text = await res.body.text();
          assert.ok(res.statusCode === 200 || res.statusCode === 400, `${path} ${res.statusCode} ${text.slice(0, 200)} for ${body.slice(0, 200)}`);
          JSON.parse(text);
          cases++;
        }
      }
      for (const path of ['/outbox', '/webhooks/log']) {
        for (let i = 0; i < 10; i++) {
          const since = encodeURIComponent(String(junkValue(r)).slice(0, 50));
          const res = await request(`${sim.url}/_simulator${path}?since=${since}`, { reset: true, signal: AbortSignal.timeout(10_000) });
          const answer = JSON.parse(await res.body.text());
          if (res.statusCode === 400) assert.equal(answer.field, 'since');
          else assert.equal(res.statusCode, 200);
          cases++;
        }
      }
      for (let i = 0; i < 20; i++) {
        const segment = encodeURIComponent(String(junkValue(r)).slice(0, 40)) || '%25';
        const method = ['GET', 'POST', 'DELETE', 'PUT', 'PATCH'][Math.floor(r() * 5)]!;
        const res = await request(`${sim.url}/_simulator/${['webhooks', 'world', 'x', 'sessions'][i % 4]}/${segment}`, { method: method as Dispatcher.HttpMethod, body: method === 'GET' ? null : '{}', headers: { 'content-type': 'application/json' }, reset: true, signal: AbortSignal.timeout(10_000) });
        assert.ok([200, 400, 404, 405].includes(res.statusCode), `${method} ${segment}: ${res.statusCode}`);
        await res.body.text();
        cases++;
      }
      // a request target the URL parser refuses, and a request line that is not HTTP at all
      for (const raw of ['GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n', '\u0001\u0002 garbage\r\n\r\n']) {
        const reply = await rawHttp(sim.port, raw);
        assert.ok(reply === '' || /^HTTP\/1\.1 400 /.test(reply), JSON.stringify(reply.slice(0, 80)));
      }
      assert.ok(cases > 500, `ran ${cases} cases`);

      // still whole: serves the API, the gateway, and the outbox
      assert.equal((await control(sim, 'GET', '/info')).status, 200);
      assert.equal((await control(sim, 'GET', '/state')).status, 200);
      const bot = await RawBot.connect(sim);
      await bot.identify(`QQBot ${await token(sim)}`, GROUP_C2C);
      const posted = sim.postMessage({ kind: 'c2c', content: 'after the storm' });
      assert.equal((await bot.next((f) => f.t === 'C2C_MESSAGE_CREATE')).d.id, posted.id);
      bot.close();
    });
  });

  test('gateway: junk frames close with the platform code (4001/4002/4004/4006/4007/4010/4013) and the gateway keeps serving', async () => {
    await withSim({ maxFrameBytes: 4096, sessionStartLimit: { total: 1000, maxConcurrency: 1000 } }, async (sim) => {
      const r = prng(4002);
      const tok = `QQBot ${await token(sim)}`;
      const good = await RawBot.connect(sim);
      const ready = await good.identify(tok, AT);
      const closedWithin = (bot: RawBot) => Promise.race([bot.closed, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no close within 10 s')), 10_000).unref())]);
      type Case = { frame: string | Buffer; binary?: boolean; codes: number[]; label: string };
      const cases: Case[] = [];
      for (const m of MALFORMED) cases.push({ frame: m, codes: [4002], label: 'malformed' });
      for (const v of [1, '"x"', '[]', 'null', 'true', deepArray(2000)]) cases.push({ frame: String(v), codes: [4002], label: 'not an object' });
      for (let i = 0; i < 15; i++) cases.push({ frame: JSON.stringify({ op: junkNot(r, 'number'), d: junkValue(r) }).slice(0, 4000), codes: [4002], label: 'op not a number' });
      for (const op of [0, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, -1, 2 ** 31, 1e300]) cases.push({ frame: JSON.stringify({ op }), codes: [4001], label: `op ${op}` });
      for (const op of [1.5, -0.25]) cases.push({ frame: JSON.stringify({ op }), codes: [4002], label: `op ${op}` });
      for (let i = 0; i < 15; i++) cases.push({ frame: JSON.stringify({ op: 2, d: junkValue(r) }).slice(0, 4000), codes: [4002, 4004], label: 'identify junk d' });
      for (let i = 0; i < 15; i++) cases.push({ frame: JSON.stringify({ op: 6, d: junkValue(r) }).slice(0, 4000), codes: [4002, 4004], label: 'resume junk d' });
      for (let i = 0; i < 5; i++) {
        cases.push({ frame: JSON.stringify({ op: 2, d: { token: junkNot(r, 'string'), intents: AT, shard: [0, 1] } }), codes: [4004], label: 'identify token' });
        cases.push({ frame: JSON.stringify({ op: 2, d: { token: tok, intents: junkNot(r, 'number'), shard: [0, 1] } }), codes: [4013], label: 'identify intents' });
        cases.push({ frame: JSON.stringify({ op: 2, d: { token: tok, intents: AT, shard: junkNot(r, 'object') } }), codes: [4010], label: 'identify shard' });
        cases.push({ frame: JSON.stringify({ op: 6, d: { token: tok, session_id: junkNot(r, 'string'), seq: 0 } }), codes: [4006], label: 'resume session_id' });
        cases.push({ frame: JSON.stringify({ op: 6, d: { token: tok, session_id: ready.d.session_id, seq: junkNot(r, 'number') } }), codes: [4007], label: 'resume seq' });
      }
      for (let i = 0; i < 10; i++) cases.push({ frame: Buffer.from(Array.from({ length: 1 + Math.floor(r() * 64) }, () => Math.floor(r() * 256))), binary: r() < 0.5, codes: [4002], label: 'random bytes' });
      cases.push({ frame: JSON.stringify({ op: 1, d: 'x'.repeat(5000) }), codes: [4002], label: 'over maxFrameBytes' });
      cases.push({ frame: JSON.stringify({ op: 1, d: 'x'.repeat(200_000) }), codes: [4002], label: 'far over maxFrameBytes, under the transport ceiling' });
      // above the transport ceiling ws refuses the frame itself, before the gateway can read it (README)
      cases.push({ frame: 'x'.repeat((1 << 20) + 1), codes: [1009], label: 'over the transport ceiling' });

      for (const c of cases) {
        const bot = await RawBot.connect(sim);
        bot.ws.send(c.frame, { binary: c.binary ?? false });
        const { code } = await closedWithin(bot);
        // junk may be long: whatever the field, a frame over maxFrameBytes is refused as a whole first
        const codes = Buffer.byteLength(c.frame) > 4096 && !c.codes.includes(1009) ? [4002] : c.codes;
        assert.ok(codes.includes(code), `${c.label}: closed with ${code}, expected ${codes.join('/')} for ${String(c.frame).slice(0, 80)}`);
      }
      // junk in a heartbeat's d is not the gateway's business: it is acknowledged
      for (let i = 0; i < 5; i++) {
        const bot = await RawBot.connect(sim);
        let frame: string;
        do frame = JSON.stringify({ op: 1, d: junkValue(r) }); while (Buffer.byteLength(frame) > 4096);
        bot.send(frame);
        await bot.next((f) => f.op === 11);
        bot.close();
      }
      assert.ok(cases.length > 100);

      // the session that watched all this is untouched, and new ones still start
      const posted = sim.postMessage({ kind: 'guild_at', content: 'still here' });
      assert.equal((await good.next((f) => f.t === 'AT_MESSAGE_CREATE')).d.id, posted.id);
      const fresh = await RawBot.connect(sim);
      await fresh.identify(tok, AT);
      good.close();
      fresh.close();
    });
  });
});

/** Writes raw bytes to the server and returns what comes back before the connection ends. */
function rawHttp(port: number, raw: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(raw));
    let reply = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => { reply += chunk; });
    socket.on('close', () => resolve(reply));
    socket.on('error', () => resolve(reply));
    socket.setTimeout(10_000, () => { socket.destroy(); reject(new Error('raw HTTP request hung')); });
  });
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
