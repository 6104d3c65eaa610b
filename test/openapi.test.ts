import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';
import { Secret } from '../runtime/config/secret.ts';
import { createLogger } from '../runtime/logging/logger.ts';
import {
  AccessTokenSource, LegacyTokenSource, OpenAPIClient, OpenAPIError, TokenError, resolveEndpoints, routeKey,
  type RateLimitedEvent, type ResponseEvent, type TokenSource,
} from '../runtime/openapi/index.ts';
import { renewalDelay } from '../runtime/openapi/token-source.ts';

const APP_ID = '1020000001';
const WAIT_MS = 20_000;

interface Call {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: unknown;
  /** performance.now() when the request arrived (the server's clock, for lower bounds only) */
  at: number;
}

type Reply = { status: number; headers?: Record<string, string>; body?: unknown } | 'hang' | 'destroy';

/**
 * A stand-in for the QQ platform on 127.0.0.1: the access-token endpoint (mints real, expiring
 * tokens and checks the secret) and the OpenAPI (checks the Authorization header, then asks the
 * test's `api` function for the answer).
 */
class Platform extends EventEmitter {
  readonly secret = `S3cr3t-${randomBytes(12).toString('hex')}`;
  readonly legacyToken = `LegacyTok-${randomBytes(12).toString('hex')}`;
  /** seconds; what `expires_in` says */
  lifetime = 7200;
  /** answer the token endpoint with 401 (echoing the secret it was sent) */
  rejectSecret = false;
  tokenRequests = 0;
  readonly minted: string[] = [];
  readonly valid = new Map<string, number>();
  /** while set, token responses wait for it */
  tokenGate: Promise<void> | undefined;
  readonly calls: Call[] = [];
  api: (call: Call) => Reply | Promise<Reply> = (call) => ({ status: 200, body: { ok: true, path: call.path } });
  url = '';
  readonly #server: Server;
  readonly #hanging = new Set<ServerResponse>();

  constructor() {
    super();
    this.#server = createServer((req, res) => void this.#handle(req, res));
  }

  get tokenUrl(): string {
    return `${this.url}/app/getAppAccessToken`;
  }

  async start(): Promise<this> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const res of this.#hanging) res.destroy();
    this.#hanging.clear();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  callsTo(method: string, path: string): Call[] {
    return this.calls.filter((c) => c.method === method && c.path === path);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const body: unknown = text ? JSON.parse(text) : undefined;
    const url = new URL(req.url ?? '/', 'http://x');
    const send = (status: number, payload?: unknown, headers: Record<string, string> = {}): void => {
      if (payload === undefined) {
        res.writeHead(status, headers).end();
      } else {
        res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(payload));
      }
    };

    if (req.method === 'POST' && url.pathname === '/app/getAppAccessToken') {
      const n = ++this.tokenRequests;
      const previous = this.minted.at(-1);
      this.emit('tokenRequest', { n, previousStillValid: previous !== undefined && Date.now() < (this.valid.get(previous) ?? 0) });
      if (this.tokenGate) await this.tokenGate;
      const { appId, clientSecret } = (body ?? {}) as { appId?: string; clientSecret?: string };
      if (this.rejectSecret || appId !== APP_ID || clientSecret !== this.secret) {
        send(401, { code: 100016, message: `invalid appid or secret: ${clientSecret}` });
        return;
      }
      const token = `Tok${n}-${randomBytes(16).toString('hex')}`;
      this.minted.push(token);
      this.valid.set(token, Date.now() + this.lifetime * 1000);
      // expires_in arrives as a string (what the platform sends) and as a number (what botgo chokes on)
      send(200, { access_token: token, expires_in: n % 2 === 1 ? String(this.lifetime) : this.lifetime });
      this.emit('tokenResponse', n);
      return;
    }

    const call: Call = { method: req.method ?? '', path: url.pathname, query: url.searchParams, headers: req.headers, body, at: performance.now() };
    this.calls.push(call);
    this.emit('call', call);
    const auth = req.headers.authorization ?? '';
    const token = auth.startsWith('QQBot ') ? auth.slice(6) : undefined;
    const accessOk = token !== undefined && Date.now() < (this.valid.get(token) ?? 0);
    const legacyOk = auth === `Bot ${APP_ID}.${this.legacyToken}`;
    if (!accessOk && !legacyOk) {
      // echo the credential back, as a careless server might: the client must scrub it
      send(401, { code: 11241, message: `token invalid: ${auth}` }, { 'X-Tps-trace-ID': `trace-401-${this.calls.length}` });
      return;
    }
    const reply = await this.api(call);
    if (reply === 'hang') {
      this.#hanging.add(res);
      res.on('close', () => this.#hanging.delete(res));
      return;
    }
    if (reply === 'destroy') {
      req.socket.destroy();
      return;
    }
    send(reply.status, reply.body, reply.headers);
  }
}

/** Resolves when `emitter` emits `event` with a value `predicate` accepts; fails after WAIT_MS. */
function waitFor<T>(emitter: EventEmitter, event: string, predicate: (value: T) => boolean = () => true): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out waiting for ${event}`));
    }, WAIT_MS);
    function listener(value: T): void {
      if (!predicate(value)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(value);
    }
    emitter.on(event, listener);
  });
}

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function setup(options: { timeoutMs?: number; retries?: number; logLines?: string[]; tokenSource?: (p: Platform) => TokenSource } = {}) {
  const platform = await new Platform().start();
  const logger = options.logLines
    ? createLogger({ level: 'trace', destination: { write: (line: string) => void options.logLines!.push(line) } })
    : undefined;
  const tokenSource = options.tokenSource?.(platform)
    ?? new AccessTokenSource({ appId: APP_ID, secret: new Secret(platform.secret), tokenEndpoint: platform.tokenUrl, ...(logger ? { logger } : {}) });
  const client = new OpenAPIClient({
    baseUrl: platform.url,
    appId: APP_ID,
    tokenSource,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.retries !== undefined ? { retries: options.retries } : {}),
    ...(logger ? { logger } : {}),
  });
  const close = async (): Promise<void> => {
    await client.close();
    tokenSource.close();
    await platform.close();
  };
  return { platform, tokenSource, client, close };
}

describe('token sources', () => {
  test('access token: 50 concurrent callers share one fetch; renewed before expiry while the old token keeps serving', async () => {
    const platform = await new Platform().start();
    platform.lifetime = 5;
    const source = new AccessTokenSource({ appId: APP_ID, secret: new Secret(platform.secret), tokenEndpoint: platform.tokenUrl });
    try {
      const values = await Promise.all(Array.from({ length: 50 }, () => source.authorization()));
      assert.equal(platform.tokenRequests, 1, 'one token request for 50 callers');
      assert.deepEqual(new Set(values), new Set([`QQBot ${platform.minted[0]}`]));

      // The renewal comes by itself (no caller asks), before the first token expires.
      const gate = deferred();
      platform.tokenGate = gate.promise;
      const renewal = await waitFor<{ n: number; previousStillValid: boolean }>(platform, 'tokenRequest');
      assert.equal(renewal.n, 2);
      assert.equal(renewal.previousStillValid, true, 'renewal must start while the current token is still valid');
      // While the renewal is held by the server, callers get the old token at once.
      assert.equal(await source.authorization(), `QQBot ${platform.minted[0]}`);
      const responded = waitFor(platform, 'tokenResponse', (n: number) => n === 2);
      platform.tokenGate = undefined;
      gate.resolve();
      await responded;
      await eventually(async () => (await source.authorization()) === `QQBot ${platform.minted[1]}`, 'the renewed token');
      assert.equal(platform.tokenRequests, 2);

      // A forced refresh from 50 callers at once (a burst of 401s) is one fetch too.
      const refreshed = await Promise.all(Array.from({ length: 50 }, () => source.refresh()));
      assert.equal(platform.tokenRequests, 3);
      assert.deepEqual(new Set(refreshed), new Set([`QQBot ${platform.minted[2]}`]));
    } finally {
      source.close();
      await platform.close();
    }
  });

  test('renewal is scheduled inside the platform 60 s overlap window, and sanely for tiny lifetimes', () => {
    for (const r of [0, 0.5, 0.999]) {
      const long = renewalDelay(7200_000, r);
      assert.ok(long >= 7200_000 - 55_000 && long <= 7200_000 - 30_000, `7200 s → ${long}`);
      const short = renewalDelay(3000, r);
      assert.ok(short >= 100 && short < 3000, `3 s → ${short}`);
    }
  });

  test('a refused token request is a TokenError without the secret; closed sources refuse', async () => {
    const platform = await new Platform().start();
    platform.rejectSecret = true;
    const source = new AccessTokenSource({ appId: APP_ID, secret: new Secret(platform.secret), tokenEndpoint: platform.tokenUrl });
    try {
      const err = await source.authorization().then(() => assert.fail('expected a rejection'), (e: unknown) => e);
      assert.ok(err instanceof TokenError);
      assert.equal(err.code, 'E_TOKEN');
      assert.equal(err.platformCode, 100016);
      assert.equal(err.retryable, false);
      assert.equal(platform.tokenRequests, 1, 'bad credentials are not retried');
      assertClean([err.message, JSON.stringify(err), inspect(err, { depth: 10 }), inspect(source)], [platform.secret]);
      source.close();
      await assert.rejects(source.authorization(), TokenError);
    } finally {
      source.close();
      await platform.close();
    }
  });

  test('legacy token source yields "Bot appId.token" and refresh keeps it', async () => {
    const source = new LegacyTokenSource(APP_ID, new Secret('abc123token'));
    assert.equal(await source.authorization(), `Bot ${APP_ID}.abc123token`);
    assert.equal(await source.refresh(), `Bot ${APP_ID}.abc123token`);
    assert.ok(!inspect(source).includes('abc123token'));
    source.close();
  });
});

describe('OpenAPI client', () => {
  test('sends Authorization, X-Union-Appid, User-Agent, JSON bodies, and X-Callback-AppID on interactions', async () => {
    const { platform, client, close } = await setup({ tokenSource: (p) => new LegacyTokenSource(APP_ID, new Secret(p.legacyToken)) });
    try {
      platform.api = (call) => (call.method === 'PUT' ? { status: 204 } : { status: 200, body: { id: 'm1', timestamp: '1' } });
      await client.postGroupMessage('GROUP1', { content: 'hi', msg_type: 0, msg_id: 'u1', msg_seq: 2 });
      await client.putInteraction('inter-1', 0);
      const [send, ack] = platform.calls;
      assert.ok(send && ack);
      assert.equal(send.headers.authorization, `Bot ${APP_ID}.${platform.legacyToken}`);
      assert.equal(send.headers['x-union-appid'], APP_ID);
      assert.match(send.headers['user-agent'] ?? '', /^qqbot-runtime\/\d+\.\d+\.\d+/);
      assert.match(send.headers['content-type'] ?? '', /^application\/json/);
      assert.deepEqual(send.body, { content: 'hi', msg_type: 0, msg_id: 'u1', msg_seq: 2 });
      assert.equal(send.headers['x-callback-appid'], undefined);
      assert.equal(ack.method, 'PUT');
      assert.equal(ack.path, '/interactions/inter-1');
      assert.equal(ack.headers['x-callback-appid'], APP_ID);
      assert.deepEqual(ack.body, { code: 0 });
    } finally {
      await close();
    }
  });

  test('401 → one token refresh → the retry succeeds; a second 401 is an error after exactly one retry', async () => {
    const { platform, client, close } = await setup();
    try {
      await client.me();
      assert.equal(platform.tokenRequests, 1);
      platform.valid.clear(); // the platform forgets every token
      const me = await client.me();
      assert.deepEqual(me, { ok: true, path: '/users/@me' });
      assert.equal(platform.tokenRequests, 2, 'one refresh');
      const calls = platform.callsTo('GET', '/users/@me');
      assert.equal(calls.length, 3);
      assert.notEqual(calls[1]!.headers.authorization, calls[2]!.headers.authorization, 'the retry carries the new token');

      platform.api = () => ({ status: 401, body: { code: 11243, message: 'token check not passed' } });
      const err = await client.guild('g1').then(() => assert.fail('expected a rejection'), (e: unknown) => e);
      assert.ok(err instanceof OpenAPIError);
      assert.equal(err.status, 401);
      assert.equal(err.platformCode, 11243);
      assert.equal(platform.callsTo('GET', '/guilds/g1').length, 2, 'exactly one retry');
      assert.equal(platform.tokenRequests, 3);
    } finally {
      await close();
    }
  });

  test('platform code 11244 in the body → token refresh → retry', async () => {
    const { platform, client, close } = await setup();
    try {
      let first = true;
      platform.api = (call) => {
        if (first) {
          first = false;
          return { status: 400, body: { code: 11244, message: 'token expired' } };
        }
        return { status: 200, body: { id: 'c1', guild_id: 'g', name: 'general', type: 0, seen: call.headers.authorization } };
      };
      const channel = await client.getChannel('c1');
      assert.equal(channel.id, 'c1');
      assert.equal(platform.tokenRequests, 2);
      const calls = platform.callsTo('GET', '/channels/c1');
      assert.equal(calls.length, 2);
      assert.equal(calls[1]!.headers.authorization, `QQBot ${platform.minted[1]}`);
    } finally {
      await close();
    }
  });

  test('a 429 burst with retry hints: every send succeeds once, in FIFO order per route, none dropped', async () => {
    const { platform, client, close } = await setup();
    const limited: RateLimitedEvent[] = [];
    const responses: ResponseEvent[] = [];
    client.on('rate-limited', (e) => limited.push(e));
    client.on('response', (e) => responses.push(e));
    try {
      const attempts = new Map<string, number>();
      const accepted = new Map<string, number[]>();
      let limitedReplies = 0;
      platform.api = (call) => {
        const channel = call.path.split('/')[2]!;
        const n = (attempts.get(channel) ?? 0) + 1;
        attempts.set(channel, n);
        if (n === 7) {
          // a platform-code rate limit without any hint: the client backs off on its own
          limitedReplies++;
          return { status: 400, body: { code: 20028, message: 'channel write rate limit' } };
        }
        if (n % 3 === 1) {
          limitedReplies++;
          const hint: Record<string, string> = n % 2 === 1 ? { 'Retry-After': '0.05' } : { 'X-RateLimit-Reset-After': '0.05' };
          return { status: 429, headers: hint, body: { code: 429, message: 'too many requests' } };
        }
        const seq = (call.body as { msg_seq: number }).msg_seq;
        accepted.set(channel, [...(accepted.get(channel) ?? []), seq]);
        return { status: 200, body: { id: `${channel}-${seq}`, channel_id: channel } };
      };
      const channels = ['chanA', 'chanB'];
      const perChannel = 20;
      const settled = new Map<string, number[]>(channels.map((c) => [c, []]));
      const all = channels.flatMap((channel) =>
        Array.from({ length: perChannel }, (_, seq) =>
          client.postMessage(channel, { content: `#${seq}`, msg_id: 'm', msg_seq: seq }).then((result) => {
            assert.equal(result.id, `${channel}-${seq}`, 'each caller gets its own response');
            settled.get(channel)!.push(seq);
          }),
        ),
      );
      await Promise.all(all);
      const inOrder = Array.from({ length: perChannel }, (_, i) => i);
      for (const channel of channels) {
        assert.deepEqual(accepted.get(channel), inOrder, `${channel}: accepted once each, in order`);
        assert.deepEqual(settled.get(channel), inOrder, `${channel}: promises settled in order`);
      }
      assert.ok(limitedReplies >= 2 * 8, 'the server did rate-limit');
      assert.equal(limited.length, limitedReplies, 'one rate-limited event per rate-limited reply');
      assert.ok(limited.every((e) => e.route === 'POST /channels/chanA/messages' || e.route === 'POST /channels/chanB/messages'));
      assert.equal(responses.filter((r) => r.status === 200).length, 2 * perChannel);
    } finally {
      await close();
    }
  });

  test('a rate-limited route does not block other routes; its own queue waits behind it', async () => {
    const { platform, client, close } = await setup();
    try {
      let blocked = true;
      platform.api = (call) => {
        if (call.path === '/guilds/g1' && blocked) return { status: 429, headers: { 'Retry-After': '0.05' }, body: { code: 429, message: 'slow down' } };
        return { status: 200, body: { id: call.path.split('/')[2], name: 'guild' } };
      };
      const order: string[] = [];
      const first = client.guild('g1').then((g) => order.push(`first:${g.id}`));
      await waitFor<Call>(platform, 'call', (c) => c.path === '/guilds/g1');
      const second = client.guild('g1').then((g) => order.push(`second:${g.id}`));
      for (let i = 0; i < 5; i++) assert.equal((await client.guild('g2')).id, 'g2');
      assert.deepEqual(order, [], 'g1 is still held while g2 went through');
      blocked = false;
      await Promise.all([first, second]);
      assert.deepEqual(order, ['first:g1', 'second:g1']);
      assert.equal(platform.callsTo('GET', '/guilds/g2').length, 5);
    } finally {
      await close();
    }
  });

  test('a platform-code limit that never lifts (a spent quota) fails after a bounded number of attempts; HTTP 429 keeps queueing', async () => {
    const { platform, client, close } = await setup();
    try {
      let limited429 = 12;
      platform.api = (call) => {
        if (call.path === '/v2/groups/G1/messages') return { status: 200, headers: { 'Retry-After': '0' }, body: { code: 22009, message: 'msg limit exceed' } };
        if (call.path === '/v2/groups/G2/messages' && limited429-- > 0) return { status: 429, headers: { 'Retry-After': '0' }, body: { code: 429, message: 'slow down' } };
        return { status: 200, body: { id: 'sent', timestamp: 1 } };
      };
      const error = await client.postGroupMessage('G1', { content: 'hi', msg_type: 0 }).then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof OpenAPIError, String(error));
      assert.equal(error.platformCode, 22009);
      assert.equal(platform.callsTo('POST', '/v2/groups/G1/messages').length, 9, 'one attempt plus 8 after limits');
      // more 429s in a row than the platform-code bound, and it still goes through
      assert.equal((await client.postGroupMessage('G2', { content: 'hi', msg_type: 0 })).id, 'sent');
      assert.equal(platform.callsTo('POST', '/v2/groups/G2/messages').length, 13);
    } finally {
      await close();
    }
  });

  test('a timeout is an OpenAPIError naming method and path; GETs retry a bounded number of times, POSTs never blindly', async () => {
    const { platform, client, close } = await setup({ timeoutMs: 300, retries: 1 });
    try {
      let getFailures = 0;
      platform.api = (call) => {
        if (call.path === '/guilds/slow') return 'hang';
        if (call.path === '/guilds/flaky') return ++getFailures <= 1 ? { status: 503, body: { code: 503, message: 'busy' } } : { status: 200, body: { id: 'flaky' } };
        if (call.path === '/channels/reset/messages') return 'destroy';
        return { status: 503, body: { code: 503, message: 'busy' } };
      };
      const err = await client.guild('slow').then(() => assert.fail('expected a timeout'), (e: unknown) => e);
      assert.ok(err instanceof OpenAPIError);
      assert.equal(err.code, 'E_OPENAPI_TIMEOUT');
      assert.equal(err.method, 'GET');
      assert.equal(err.path, '/guilds/slow');
      assert.match(err.message, /GET \/guilds\/slow/);
      assert.equal(platform.callsTo('GET', '/guilds/slow').length, 2, 'one attempt + one retry');

      assert.equal((await client.guild('flaky')).id, 'flaky');
      assert.equal(platform.callsTo('GET', '/guilds/flaky').length, 2);

      const sendErr = await client.postMessage('busy', { content: 'x' }).then(() => assert.fail('expected 503'), (e: unknown) => e);
      assert.ok(sendErr instanceof OpenAPIError);
      assert.equal(sendErr.code, 'E_OPENAPI');
      assert.equal(sendErr.status, 503);
      assert.equal(platform.callsTo('POST', '/channels/busy/messages').length, 1, 'a send is never blind-retried');

      const netErr = await client.postMessage('reset', { content: 'x' }).then(() => assert.fail('expected a network error'), (e: unknown) => e);
      assert.ok(netErr instanceof OpenAPIError);
      assert.equal(netErr.code, 'E_OPENAPI_NETWORK');
      assert.equal(netErr.path, '/channels/reset/messages');
      assert.equal(platform.callsTo('POST', '/channels/reset/messages').length, 1);
    } finally {
      await close();
    }
  });

  test('codes the platform marks retryable are retried exactly once; sends only when msg_seq makes the repeat a duplicate', async () => {
    const { platform, client, close } = await setup();
    try {
      const failuresLeft = new Map<string, number>();
      const codeFor = new Map<string, number>();
      const plan = (path: string, code: number, failures: number): void => {
        codeFor.set(path, code);
        failuresLeft.set(path, failures);
      };
      platform.api = (call) => {
        const left = failuresLeft.get(call.path) ?? 0;
        if (left > 0) {
          failuresLeft.set(call.path, left - 1);
          return { status: 500, body: { code: codeFor.get(call.path), message: 'internal error, please retry' } };
        }
        return { status: 200, body: { id: 'ok', timestamp: '1' } };
      };
      // a read, a recall, a reaction: the retry succeeds
      plan('/guilds/g1/roles', 11252, 1);
      plan('/channels/c1/messages/m1', 306003, 1);
      plan('/channels/c1/messages/m1/reactions/1/4', 620007, 1);
      await client.listRoles('g1');
      await client.recallMessage('c1', 'm1');
      await client.putReaction('c1', 'm1', { type: 1, id: '4' });
      assert.equal(platform.callsTo('GET', '/guilds/g1/roles').length, 2);
      assert.equal(platform.callsTo('DELETE', '/channels/c1/messages/m1').length, 2);
      assert.equal(platform.callsTo('PUT', '/channels/c1/messages/m1/reactions/1/4').length, 2);

      // a passive group reply with msg_seq: the platform dedupes msg_id + msg_seq, so the repeat is safe
      plan('/v2/groups/G1/messages', 501002, 1);
      assert.equal((await client.postGroupMessage('G1', { content: 'hi', msg_type: 0, msg_id: 'u1', msg_seq: 1 })).id, 'ok');
      const groupSends = platform.callsTo('POST', '/v2/groups/G1/messages');
      assert.equal(groupSends.length, 2);
      assert.deepEqual(groupSends[1]!.body, groupSends[0]!.body, 'the very same msg_id + msg_seq went again');

      // a channel message without msg_seq and a media upload: a repeat could reach users twice
      plan('/channels/c2/messages', 501010, 1);
      plan('/v2/users/U1/files', 501002, 1);
      for (const send of [
        client.postMessage('c2', { content: 'x', msg_id: 'u2' }),
        client.uploadC2CMedia('U1', { file_type: 1, url: 'https://x/y.png', srv_send_msg: true }),
      ]) {
        const err = await send.then(() => assert.fail('expected a rejection'), (e: unknown) => e);
        assert.ok(err instanceof OpenAPIError);
        assert.ok(err.platformCode === 501010 || err.platformCode === 501002);
      }
      assert.equal(platform.callsTo('POST', '/channels/c2/messages').length, 1);
      assert.equal(platform.callsTo('POST', '/v2/users/U1/files').length, 1);

      // once, not more: a code that persists is an error after one repeat
      plan('/guilds/g2', 11263, 5);
      const err = await client.guild('g2').then(() => assert.fail('expected a rejection'), (e: unknown) => e);
      assert.ok(err instanceof OpenAPIError);
      assert.equal(err.platformCode, 11263);
      // GET also retries 5xx (retries: 2 by default), so count only what the code retry adds: 1 + 1 + 2
      assert.equal(platform.callsTo('GET', '/guilds/g2').length, 4);
      plan('/channels/c3/pins/m1', 11263, 5);
      await assert.rejects(client.pinMessage('c3', 'm1'), OpenAPIError);
      assert.equal(platform.callsTo('PUT', '/channels/c3/pins/m1').length, 2, 'a write goes exactly twice');

      // neighbours of the ranges are not retried
      for (const code of [501001, 501013, 306004, 11243]) {
        const path = `/channels/n${code}/pins/m1`;
        plan(path, code, 1);
        await assert.rejects(client.pinMessage(`n${code}`, 'm1'), OpenAPIError);
        assert.equal(platform.callsTo('PUT', path).length, 1, `code ${code} is not retried`);
      }
    } finally {
      await close();
    }
  });

  test('a success saying the route has 0 requests left pauses that route until its reset, also for a request that comes later', async () => {
    const { platform, client, close } = await setup();
    try {
      const RESET_S = 1;
      const exhaustedAt: number[] = [];
      platform.api = (call): Reply => {
        if (call.path === '/channels/c1/messages' && platform.callsTo('POST', '/channels/c1/messages').length % 2 === 1) {
          exhaustedAt.push(performance.now());
          return { status: 200, headers: { 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset-After': String(RESET_S) }, body: { id: 'm' } };
        }
        return { status: 200, headers: { 'X-RateLimit-Remaining': '4' }, body: { id: 'm' } };
      };
      // queued behind the exhausting request
      const [a, b] = [client.postMessage('c1', { content: 'a' }), client.postMessage('c1', { content: 'b' })];
      await a;
      assert.equal((await client.postMessage('c9', { content: 'other route' })).id, 'm', 'other routes are not paused');
      await b;
      // issued only after the exhausting request settled: the route's queue was empty meanwhile
      await client.postMessage('c1', { content: 'c' });
      await client.postMessage('c1', { content: 'd' });
      const sends = platform.callsTo('POST', '/channels/c1/messages');
      assert.equal(sends.length, 4);
      assert.equal(exhaustedAt.length, 2);
      // lower bounds on the server's own clock: the next request never came before the reset
      assert.ok(sends[1]!.at - exhaustedAt[0]! >= RESET_S * 1000 - 50, `queued request waited ${sends[1]!.at - exhaustedAt[0]!} ms`);
      assert.ok(sends[3]!.at - exhaustedAt[1]! >= RESET_S * 1000 - 50, `later request waited ${sends[3]!.at - exhaustedAt[1]!} ms`);
    } finally {
      await close();
    }
  });

  test('20028 (channel write limit) pauses every write route of that channel; reads and other channels go on', async () => {
    const { platform, client, close } = await setup();
    const limited: RateLimitedEvent[] = [];
    client.on('rate-limited', (e) => limited.push(e));
    try {
      const RETRY_S = 3;
      let limitedAt = 0;
      platform.api = (call) => {
        if (call.method === 'POST' && call.path === '/channels/c1/messages' && limitedAt === 0) {
          limitedAt = performance.now();
          return { status: 200, headers: { 'Retry-After': String(RETRY_S) }, body: { code: 20028, message: 'channel write rate limit' } };
        }
        if (call.method === 'DELETE' || call.method === 'PUT') return { status: 204 };
        return { status: 200, body: { id: 'm' } };
      };
      const send = client.postMessage('c1', { content: 'x' });
      send.catch(() => undefined); // awaited below; a failed assertion before that must not turn it unhandled
      await eventually(async () => limited.length === 1, 'the 20028');
      const recall = client.recallMessage('c1', 'm0');
      const pin = client.pinMessage('c1', 'm0');
      // not paused: a read of the same channel and a write to another channel
      await client.listMessages('c1', { limit: 1 });
      await client.recallMessage('c2', 'm0');
      assert.equal(platform.callsTo('DELETE', '/channels/c1/messages/m0').length, 0, 'the recall on c1 waits out the channel limit');
      assert.equal(platform.callsTo('PUT', '/channels/c1/pins/m0').length, 0, 'the pin on c1 waits out the channel limit');
      await Promise.all([send, recall, pin]);
      for (const call of [...platform.callsTo('DELETE', '/channels/c1/messages/m0'), ...platform.callsTo('PUT', '/channels/c1/pins/m0')]) {
        assert.ok(call.at - limitedAt >= RETRY_S * 1000 - 50, `${call.method} ${call.path} came ${call.at - limitedAt} ms after the 20028`);
      }
      assert.equal(platform.callsTo('POST', '/channels/c1/messages').length, 2, 'the limited send went again once');
    } finally {
      await close();
    }
  });

  test('a caller AbortSignal: refused up front, leaves the queue at once, cancels an in-flight request and a rate-limit or retry wait', async () => {
    const { platform, client, close } = await setup({ retries: 2 });
    try {
      const holds = new Map<string, () => void>();
      platform.api = (call) => {
        if (call.path === '/guilds/held') return new Promise((resolve) => holds.set(call.path, () => resolve({ status: 200, body: { id: 'held' } })));
        if (call.path === '/guilds/hang') return 'hang';
        if (call.path === '/guilds/limited') return { status: 429, headers: { 'Retry-After': '30' }, body: { code: 429, message: 'slow down' } };
        if (call.path === '/guilds/busy') return { status: 503, body: { code: 503, message: 'busy' } };
        return { status: 200, body: { id: call.path.split('/')[2] } };
      };
      const aborted = (p: Promise<unknown>): Promise<void> =>
        p.then(
          () => assert.fail('expected an abort'),
          (e: unknown) => {
            assert.ok(e instanceof OpenAPIError);
            assert.equal(e.code, 'E_OPENAPI_ABORTED');
          },
        );

      // already aborted: never sent
      await aborted(client.request('GET', '/guilds/pre', { signal: AbortSignal.abort() }));
      assert.equal(platform.callsTo('GET', '/guilds/pre').length, 0);

      // queued behind a held request on the same route: leaves the queue while the first is still out
      const first = client.request('GET', '/guilds/held');
      await eventually(async () => holds.has('/guilds/held'), 'the held request');
      const queued = new AbortController();
      const second = client.request('GET', '/guilds/held', { signal: queued.signal });
      const third = client.request<{ id: string }>('GET', '/guilds/held');
      queued.abort();
      await aborted(second);
      assert.equal(platform.callsTo('GET', '/guilds/held').length, 1, 'the aborted request never reached the platform');
      holds.get('/guilds/held')!();
      holds.delete('/guilds/held');
      await first;
      await eventually(async () => holds.has('/guilds/held'), 'the third request');
      holds.get('/guilds/held')!();
      assert.equal((await third).id, 'held', 'the route went on with the next request');
      assert.equal(platform.callsTo('GET', '/guilds/held').length, 2);

      // in flight: the connection is cancelled; the route is free again
      const inflight = new AbortController();
      const hanging = client.request('GET', '/guilds/hang', { signal: inflight.signal });
      await eventually(async () => platform.callsTo('GET', '/guilds/hang').length === 1, 'the hanging request');
      inflight.abort();
      await aborted(hanging);
      assert.equal(platform.callsTo('GET', '/guilds/hang').length, 1, 'an aborted GET is not retried');

      // waiting out a 30 s rate limit: the abort ends the wait
      const limitedSignal = new AbortController();
      let paused = false;
      const onLimited = (e: RateLimitedEvent): void => {
        if (e.route === 'GET /guilds/limited') paused = true;
      };
      client.on('rate-limited', onLimited);
      const limitedRequest = client.request('GET', '/guilds/limited', { signal: limitedSignal.signal });
      await eventually(async () => paused, 'the route to pause');
      client.off('rate-limited', onLimited);
      limitedSignal.abort();
      await aborted(limitedRequest);
      assert.equal(platform.callsTo('GET', '/guilds/limited').length, 1);

      // between retries of a failing GET
      const retrySignal = new AbortController();
      const onResponse = (e: ResponseEvent): void => {
        if (e.route === 'GET /guilds/busy') retrySignal.abort();
      };
      client.on('response', onResponse);
      await aborted(client.request('GET', '/guilds/busy', { signal: retrySignal.signal }));
      client.off('response', onResponse);
      assert.equal(platform.callsTo('GET', '/guilds/busy').length, 1, 'no retry after the abort');
    } finally {
      await close();
    }
  });

  test('trace id, platform code and err_code are carried into errors', async () => {
    const { platform, client, close } = await setup();
    try {
      platform.api = (call) =>
        call.path === '/guilds/g1'
          ? { status: 404, headers: { 'X-Tps-trace-ID': 'tps-trace-123' }, body: { code: 11253, err_code: 40012002, message: 'api not granted' } }
          : { status: 500, body: { code: 500, message: 'internal', trace_id: 'body-trace-9' } };
      const err = await client.guild('g1').then(() => assert.fail('expected a rejection'), (e: unknown) => e);
      assert.ok(err instanceof OpenAPIError);
      assert.equal(err.code, 'E_OPENAPI');
      assert.equal(err.status, 404);
      assert.equal(err.platformCode, 11253);
      assert.equal(err.errCode, 40012002);
      assert.equal(err.traceId, 'tps-trace-123');
      assert.equal(err.platformMessage, 'api not granted');
      assert.match(err.message, /GET \/guilds\/g1.*404.*11253.*api not granted.*tps-trace-123/);
      assert.equal((JSON.parse(JSON.stringify(err)) as { traceId: string }).traceId, 'tps-trace-123');

      const err2 = await client.postMessage('c1', { content: 'x' }).then(() => assert.fail('expected a rejection'), (e: unknown) => e);
      assert.ok(err2 instanceof OpenAPIError);
      assert.equal(err2.traceId, 'body-trace-9');
      assert.equal(err2.method, 'POST');
      assert.equal(err2.path, '/channels/c1/messages');
    } finally {
      await close();
    }
  });

  test('202 queued for audit is success with the audit id; other 2xx bodies with an error code are errors', async () => {
    const { platform, client, close } = await setup();
    try {
      platform.api = (call) =>
        call.path === '/channels/audit/messages'
          ? { status: 202, body: { code: 304023, message: 'push message is waiting for audit now', data: { message_audit: { audit_id: 'audit-42' } } } }
          : { status: 201, body: { code: 50006, message: 'message is empty' } };
      const result = await client.postMessage('audit', { content: 'proactive' });
      assert.equal(result.audit_id, 'audit-42');
      const err = await client.postMessage('empty', {}).then(() => assert.fail('expected a rejection'), (e: unknown) => e);
      assert.ok(err instanceof OpenAPIError);
      assert.equal(err.status, 201);
      assert.equal(err.platformCode, 50006);
    } finally {
      await close();
    }
  });

  test('the token and the secret never reach an error message, error JSON/inspect output or a log line', async () => {
    const lines: string[] = [];
    const { platform, client, tokenSource, close } = await setup({ logLines: lines, timeoutMs: 200, retries: 1 });
    const errors: unknown[] = [];
    const capture = (p: Promise<unknown>): Promise<void> => p.then(() => assert.fail('expected a rejection'), (e: unknown) => void errors.push(e));
    try {
      platform.api = (call) => {
        if (call.path === '/guilds/echo') return { status: 403, body: { code: 11253, message: `denied for ${call.headers.authorization} / ${platform.minted.at(-1)}` } };
        if (call.path === '/guilds/slow') return 'hang';
        if (call.path === '/channels/reset/messages') return 'destroy';
        return { status: 200, body: {} };
      };
      await client.me();
      await capture(client.guild('echo'));
      await capture(client.guild('slow'));
      await capture(client.postMessage('reset', { content: 'x' }));
      platform.valid.clear();
      platform.api = (call) => ({ status: 401, body: { code: 11244, message: `expired: ${call.headers.authorization}` } });
      await capture(client.me());
      platform.rejectSecret = true;
      await capture(tokenSource.refresh());
      assert.equal(errors.length, 5);

      const legacy = await setup({ logLines: lines, tokenSource: (p) => new LegacyTokenSource(APP_ID, new Secret(p.legacyToken)) });
      try {
        legacy.platform.api = (call) => ({ status: 400, body: { code: 1, message: `bad header ${call.headers.authorization} (${legacy.platform.legacyToken})` } });
        await capture(legacy.client.me());
        assert.equal(errors.length, 6);
        const secrets = [platform.secret, ...platform.minted, legacy.platform.legacyToken];
        assert.ok(platform.minted.length >= 2);
        const texts = errors.flatMap((e) => [String(e), (e as Error).stack ?? '', JSON.stringify(e), inspect(e, { depth: 10 })]);
        texts.push(inspect(client, { depth: 10 }), inspect(tokenSource, { depth: 10 }), inspect(legacy.client, { depth: 10 }));
        assertClean(texts, secrets);
        assert.ok(lines.length >= 5, 'the logger did write lines');
        assertClean(lines, secrets);
        // the scrubbing left a visible mark where the platform echoed a credential
        assert.ok(errors.some((e) => (e as Error).message.includes('[redacted]')));
      } finally {
        await legacy.close();
      }
    } finally {
      await close();
    }
  });

  test('typed methods hit the documented paths with the documented bodies and queries', async () => {
    const { platform, client, close } = await setup();
    try {
      platform.api = (call) => {
        if (call.path === '/gateway/bot') {
          return { status: 200, body: { url: 'wss://x/websocket', shards: 2, session_start_limit: { total: 1000, remaining: 999, reset_after: 1, max_concurrency: 1 } } };
        }
        if (call.path.endsWith('/api_permission')) return { status: 200, body: { apis: [{ path: '/x', method: 'GET', desc: 'd', auth_status: 1 }] } };
        if (call.method === 'DELETE' || call.method === 'PUT') return { status: 204 };
        return { status: 200, body: { echoed: true } };
      };
      const bot = await client.gatewayBot();
      assert.equal(bot.shards, 2);
      assert.equal(bot.session_start_limit.max_concurrency, 1);
      assert.equal((await client.listAPIPermissions('g1'))[0]?.auth_status, 1);
      assert.equal(await client.recallMessage('c1', 'm1', true), undefined);
      await client.listMessages('c1', { limit: 20, before: 'm9' });
      await client.myGuilds({ limit: 100 });
      await client.uploadC2CMedia('U1', { file_type: 1, url: 'https://x/y.png', srv_send_msg: false });
      await client.putReaction('c1', 'm1', { type: 1, id: '4' });
      await client.addMemberRole('g1', 'u1', '5', 'c1');
      await client.createSchedule('c1', { name: 'n', start_timestamp: '1', end_timestamp: '2' });
      await client.muteAll('g1', { mute_seconds: '60', user_ids: ['u1'] });
      await client.getChannel('a/../b');
      await client.request('GET', '/channels/c1/threads', { query: { limit: 5, skip: undefined } });

      const seen = platform.calls.map((c) => `${c.method} ${c.path}${c.query.size ? `?${c.query}` : ''}`);
      assert.deepEqual(seen, [
        'GET /gateway/bot',
        'GET /guilds/g1/api_permission',
        'DELETE /channels/c1/messages/m1?hidetip=true',
        'GET /channels/c1/messages?limit=20&before=m9',
        'GET /users/@me/guilds?limit=100',
        'POST /v2/users/U1/files',
        'PUT /channels/c1/messages/m1/reactions/1/4',
        'PUT /guilds/g1/members/u1/roles/5',
        'POST /channels/c1/schedules',
        'PATCH /guilds/g1/mute',
        'GET /channels/a%2F..%2Fb',
        'GET /channels/c1/threads?limit=5',
      ]);
      const body = (i: number): unknown => platform.calls[i]!.body;
      assert.deepEqual(body(5), { file_type: 1, url: 'https://x/y.png', srv_send_msg: false });
      assert.deepEqual(body(7), { channel: { id: 'c1' } });
      assert.deepEqual(body(8), { schedule: { name: 'n', start_timestamp: '1', end_timestamp: '2' } });
      assert.deepEqual(body(9), { mute_seconds: '60', user_ids: ['u1'] });
    } finally {
      await close();
    }
  });

  test('route keys keep the major parameter and fold the rest', () => {
    assert.equal(routeKey('POST', '/channels/123/messages'), 'POST /channels/123/messages');
    assert.equal(routeKey('DELETE', '/channels/123/messages/456?hidetip=true'), 'DELETE /channels/123/messages/:id');
    assert.equal(routeKey('POST', '/v2/groups/ABC/messages'), 'POST /v2/groups/ABC/messages');
    assert.equal(routeKey('GET', '/users/@me/guilds'), 'GET /users/@me/guilds');
    assert.equal(routeKey('PUT', '/channels/1/messages/2/reactions/1/4'), 'PUT /channels/1/messages/:id/reactions/:id/:id');
    assert.equal(routeKey('PUT', '/interactions/xyz'), 'PUT /interactions/:id');
  });

  test('resolveEndpoints maps production, sandbox and URLs; anything else is refused', () => {
    assert.deepEqual(resolveEndpoints('production'), { apiBase: 'https://api.sgroup.qq.com', tokenEndpoint: 'https://bots.qq.com/app/getAppAccessToken' });
    assert.deepEqual(resolveEndpoints('sandbox'), { apiBase: 'https://sandbox.api.sgroup.qq.com', tokenEndpoint: 'https://bots.qq.com/app/getAppAccessToken' });
    assert.equal(resolveEndpoints('http://127.0.0.1:9000/api/').apiBase, 'http://127.0.0.1:9000/api');
    assert.throws(() => resolveEndpoints('simulator'), { code: 'E_OPENAPI_ENDPOINT' });
    assert.throws(() => resolveEndpoints('ftp://x'), { code: 'E_OPENAPI_ENDPOINT' });
  });

  test('close() rejects queued requests with E_OPENAPI_CLOSED', async () => {
    const { platform, client, close } = await setup();
    try {
      platform.api = () => 'hang';
      const running = client.guild('g1');
      await waitFor<Call>(platform, 'call');
      const queued = client.guild('g1');
      const settled = Promise.allSettled([running, queued]);
      await client.close();
      const [a, b] = await settled;
      for (const r of [a, b]) {
        assert.equal(r?.status, 'rejected');
        assert.equal(((r as PromiseRejectedResult).reason as OpenAPIError).code, 'E_OPENAPI_CLOSED');
      }
    } finally {
      await close();
    }
  });
});

function assertClean(texts: string[], secrets: string[]): void {
  for (const text of texts) {
    for (const secret of secrets) {
      assert.ok(!text.includes(secret), `a credential leaked into: ${text.slice(0, 300)}`);
    }
  }
}
