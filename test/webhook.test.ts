import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Secret } from '../runtime/config/secret.ts';
import { createLogger } from '../runtime/logging/logger.ts';
import { toDispatch, type GatewayDispatch } from '../runtime/gateway/dispatch-event.ts';
import { deriveKeys, deriveSeed, signMessage, signWebhookRequest, validationReply, verifyMessage, webhookMessage } from '../runtime/gateway/signature.ts';
import { WebhookTransport } from '../runtime/gateway/webhook.ts';

test('seed and public key derive from the secret as the protocol vector says (§11.2)', () => {
  const secret = 'naOC0ocQE3shWLAfffVLB1rhYPG7';
  assert.equal(deriveSeed(secret).toString('utf8'), 'naOC0ocQE3shWLAfffVLB1rhYPG7naOC');
  assert.equal(deriveKeys(new Secret(secret)).publicKeyHex, 'd7c362fe78aef81ff23287b493628b5db02a3c4fe30b215e4d19609b5d76673a');
  // a short secret is repeated several times
  assert.equal(deriveSeed('abc').toString('utf8'), 'abcabcabcabcabcabcabcabcabcabcab');
});

test('op 13 validation signature reproduces the protocol vector (§11.3)', () => {
  const keys = deriveKeys('DG5g3B4j9X2KOErG');
  assert.deepEqual(validationReply(keys, 'Arq0D5A61EgUu4OxUvOp', '1725442341'), {
    plain_token: 'Arq0D5A61EgUu4OxUvOp',
    signature:
      '87befc99c42c651b3aac0278e71ada338433ae26fcb24307bdc5ad38c1adc2d01bcfcadc0842edac85e85205028a1132afe09280305f13aa6909ffc2d652c706',
  });
});

test('verification works on raw bytes and refuses malformed or foreign signatures', () => {
  const keys = deriveKeys('naOC0ocQE3shWLAfffVLB1rhYPG7');
  const body = Buffer.from('{"op":0,"t":"AT_MESSAGE_CREATE",  "d":{"id":"m1"}}');
  const sig = signMessage(keys, webhookMessage('1725442341', body));
  assert.ok(verifyMessage(keys, webhookMessage('1725442341', body), sig));
  // re-serialised JSON is different bytes
  assert.ok(!verifyMessage(keys, webhookMessage('1725442341', Buffer.from(JSON.stringify(JSON.parse(body.toString())))), sig));
  assert.ok(!verifyMessage(keys, webhookMessage('1725442342', body), sig));
  assert.ok(!verifyMessage(deriveKeys('another-secret'), webhookMessage('1725442341', body), sig));
  const highBits = Buffer.from(sig, 'hex');
  highBits[63] = highBits[63]! | 0xe0;
  assert.ok(!verifyMessage(keys, webhookMessage('1725442341', body), highBits.toString('hex')));
  assert.ok(!verifyMessage(keys, webhookMessage('1725442341', body), sig.slice(2)));
  assert.ok(!verifyMessage(keys, webhookMessage('1725442341', body), 'zz'.repeat(64)));
});

const APP_ID = '1020000099';
const SECRET_VALUE = 'webhook-test-secret-value-1234';

async function withTransport(fn: (ctx: { url: string; transport: WebhookTransport; logs: string[] }) => Promise<void>, maxSkewSec?: number): Promise<void> {
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const transport = new WebhookTransport({
    port: 0,
    host: '127.0.0.1',
    path: '/qqbot/callback',
    appId: APP_ID,
    secret: new Secret(SECRET_VALUE),
    logger: createLogger({ level: 'debug', destination }),
    ...(maxSkewSec === undefined ? {} : { maxSkewSec }),
  });
  const { port } = await transport.start();
  try {
    await fn({ url: `http://127.0.0.1:${port}/qqbot/callback`, transport, logs });
  } finally {
    await transport.stop();
  }
  for (const line of logs) assert.ok(!line.includes(SECRET_VALUE), 'the secret never reaches a log line');
}

async function post(url: string, body: Buffer, headers: Record<string, string>): Promise<{ status: number; json: unknown }> {
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', 'user-agent': 'QQBot-Callback', ...headers } });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

const platformKeys = deriveKeys(SECRET_VALUE);

test('webhook answers the op 13 handshake with the secret-derived signature', async () => {
  // the vector's own secret, through the HTTP transport
  const transport = new WebhookTransport({ port: 0, host: '127.0.0.1', path: '/cb', appId: APP_ID, secret: new Secret('DG5g3B4j9X2KOErG') });
  const { port } = await transport.start();
  try {
    const body = Buffer.from(JSON.stringify({ op: 13, d: { plain_token: 'Arq0D5A61EgUu4OxUvOp', event_ts: '1725442341' } }));
    const res = await post(`http://127.0.0.1:${port}/cb`, body, { ...signWebhookRequest(deriveKeys('DG5g3B4j9X2KOErG'), body), 'x-bot-appid': APP_ID });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, {
      plain_token: 'Arq0D5A61EgUu4OxUvOp',
      signature:
        '87befc99c42c651b3aac0278e71ada338433ae26fcb24307bdc5ad38c1adc2d01bcfcadc0842edac85e85205028a1132afe09280305f13aa6909ffc2d652c706',
    });
  } finally {
    await transport.stop();
  }
});

test('a signed dispatch is acknowledged with op 12 and emitted like a websocket dispatch', async () => {
  await withTransport(async ({ url, transport }) => {
    const envelope = { op: 0, s: 7, t: 'GROUP_AT_MESSAGE_CREATE', id: 'GROUP_AT_MESSAGE_CREATE:abc', d: { id: 'msg-1', content: 'hi', group_openid: 'G1', author: { member_openid: 'U1' }, timestamp: '2025-01-01T00:00:00+08:00' } };
    // whitespace that a re-serialisation would lose: the signature covers these exact bytes
    const body = Buffer.from(JSON.stringify(envelope, null, 2));
    const got = once(transport, 'dispatch') as Promise<[GatewayDispatch]>;
    const res = await post(url, body, { ...signWebhookRequest(platformKeys, body), 'x-bot-appid': APP_ID });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { op: 12, d: 0 });
    const [dispatch] = await got;
    const { shard, transport: wsTransport, receivedAt: wsAt, ...viaWebsocket } = toDispatch(envelope, 'websocket', 0);
    assert.equal(shard, 0);
    assert.equal(wsTransport, 'websocket');
    assert.ok(wsAt > 0);
    const { transport: hookTransport, receivedAt, ...viaWebhook } = dispatch;
    assert.equal(hookTransport, 'webhook');
    assert.ok(receivedAt > 0);
    assert.deepEqual(viaWebhook, viaWebsocket, 'same fields as the websocket path, only transport/shard/receivedAt differ');
    assert.equal('shard' in dispatch, false);
    assert.deepEqual(Object.keys(dispatch).sort(), ['d', 'id', 'receivedAt', 's', 't', 'transport']);
  });
});

test('forged signature, stale timestamp, replayed body and wrong app id are each refused with 401', async () => {
  await withTransport(async ({ url, transport }) => {
    const dispatched: GatewayDispatch[] = [];
    const rejected: string[] = [];
    transport.on('dispatch', (d) => dispatched.push(d));
    transport.on('rejected', (r) => rejected.push(r.reason));
    const body = Buffer.from(JSON.stringify({ op: 0, t: 'C2C_MESSAGE_CREATE', id: 'e-1', d: { id: 'm-1', content: 'x', author: { user_openid: 'u' } } }));

    const forged = await post(url, body, signWebhookRequest(deriveKeys('not-the-secret'), body));
    assert.equal(forged.status, 401);

    const stale = await post(url, body, signWebhookRequest(platformKeys, body, String(Math.floor(Date.now() / 1000) - 3600)));
    assert.equal(stale.status, 401);

    const future = await post(url, body, signWebhookRequest(platformKeys, body, String(Math.floor(Date.now() / 1000) + 3600)));
    assert.equal(future.status, 401);

    const tampered = Buffer.from(body.toString().replace('"x"', '"y"'));
    const tamperedRes = await post(url, tampered, signWebhookRequest(platformKeys, body));
    assert.equal(tamperedRes.status, 401);

    const headers = signWebhookRequest(platformKeys, body);
    const first = await post(url, body, headers);
    assert.equal(first.status, 200);
    const replay = await post(url, body, headers);
    assert.equal(replay.status, 401);

    const wrongApp = await post(url, body, { ...signWebhookRequest(platformKeys, body, String(Math.floor(Date.now() / 1000) - 1)), 'x-bot-appid': '999' });
    assert.equal(wrongApp.status, 401);

    const unsigned = await post(url, body, {});
    assert.equal(unsigned.status, 401);

    await new Promise((r) => setImmediate(r));
    assert.equal(dispatched.length, 1, 'only the one genuine request was dispatched');
    assert.equal(rejected.length, 7);
    assert.ok(rejected.some((r) => /stale/.test(r)));
    assert.ok(rejected.some((r) => /replay/.test(r)));
    assert.ok(rejected.some((r) => /bad signature/.test(r)));
  });
});

test('the freshness window is configurable', async () => {
  await withTransport(async ({ url }) => {
    const body = Buffer.from(JSON.stringify({ op: 0, t: 'FRIEND_ADD', id: 'e-2', d: { openid: 'o', timestamp: 1 } }));
    const tenSecondsAgo = String(Math.floor(Date.now() / 1000) - 10);
    assert.equal((await post(url, body, signWebhookRequest(platformKeys, body, tenSecondsAgo))).status, 401);
  }, 5);
  await withTransport(async ({ url }) => {
    const body = Buffer.from(JSON.stringify({ op: 0, t: 'FRIEND_ADD', id: 'e-2', d: { openid: 'o', timestamp: 1 } }));
    const tenSecondsAgo = String(Math.floor(Date.now() / 1000) - 10);
    assert.equal((await post(url, body, signWebhookRequest(platformKeys, body, tenSecondsAgo))).status, 200);
  }, 60);
});

test('simulator webhook delivery: validation succeeds, signed events are dispatched once each, in order, acked with op 12', async () => {
  const { startSimulator } = await import('../runtime/simulator/index.ts');
  const secret = 'sim-webhook-secret';
  const sim = await startSimulator({ bots: [{ appId: APP_ID, secret }], printCredentials: false });
  const transport = new WebhookTransport({ port: 0, host: '127.0.0.1', path: '/qq', appId: APP_ID, secret: new Secret(secret) });
  const { port } = await transport.start();
  try {
    const got: GatewayDispatch[] = [];
    transport.on('dispatch', (d) => got.push(d));
    await sim.registerWebhook(APP_ID, `http://127.0.0.1:${port}/qq`);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(sim.postMessage({ kind: 'c2c', content: `w${i}` }).event_id);
    const deadline = Date.now() + 20_000;
    while (got.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(got.map((d) => d.id), ids, 'each event once, in order');
    assert.ok(got.every((d) => d.transport === 'webhook' && d.t === 'C2C_MESSAGE_CREATE'));
    const log = sim.webhookLog();
    assert.equal(log.find((e) => e.kind === 'validation')?.outcome, 'ok');
    const deliveries = log.filter((e) => e.kind === 'dispatch');
    assert.equal(deliveries.length, 5, 'no retries were needed');
    assert.ok(deliveries.every((e) => e.outcome === 'ok' && e.status === 200 && JSON.parse(e.body!).op === 12));
  } finally {
    await transport.stop();
    await sim.close();
  }
});
