import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Secret } from '../runtime/config/secret.ts';
import { createLogger } from '../runtime/logging/logger.ts';
import { toDispatch, type GatewayDispatch } from '../runtime/gateway/dispatch-event.ts';
import { deriveKeys, deriveSeed, signMessage, signWebhookRequest, validationReply, verifyMessage, webhookMessage } from '../runtime/gateway/signature.ts';
import { RejectionTally } from '../runtime/gateway/rejection-tally.ts';
import { WebhookTransport, type WebhookRejection, type WebhookTransportOptions } from '../runtime/gateway/webhook.ts';
import { runQQBot } from './support/qqbot-process.ts';
import { rawPost } from './support/raw-http.ts';

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

async function withTransport(fn: (ctx: { url: string; port: number; transport: WebhookTransport; logs: string[] }) => Promise<void>, options: Partial<WebhookTransportOptions> = {}): Promise<void> {
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
    ...options,
  });
  const { port } = await transport.start();
  try {
    await fn({ url: `http://127.0.0.1:${port}/qqbot/callback`, port, transport, logs });
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
  }, { maxSkewSec: 5 });
  await withTransport(async ({ url }) => {
    const body = Buffer.from(JSON.stringify({ op: 0, t: 'FRIEND_ADD', id: 'e-2', d: { openid: 'o', timestamp: 1 } }));
    const tenSecondsAgo = String(Math.floor(Date.now() / 1000) - 10);
    assert.equal((await post(url, body, signWebhookRequest(platformKeys, body, tenSecondsAgo))).status, 200);
  }, { maxSkewSec: 60 });
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

/** A well-formed signature that signs nothing: what a stranger can send without the secret. */
const FORGED = 'ab'.repeat(63) + '00';
const now = () => String(Math.floor(Date.now() / 1000));

const statusOf = (answer: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);

test('a signed body that is not a JSON object is a 400, never a 500', async () => {
  await withTransport(async ({ url, transport }) => {
    const rejected: WebhookRejection[] = [];
    transport.on('rejected', (r) => rejected.push(r.kind));
    for (const text of ['null', '[]', '[{"op":0}]', '42', '"op"', 'true', '{"op":13,"d":null}', '{"op":13,"d":"x"}', '{"op":0}', '{"op":{"x":1}}']) {
      const body = Buffer.from(text);
      const res = await post(url, body, signWebhookRequest(platformKeys, body));
      assert.equal(res.status, 400, text);
    }
    assert.deepEqual(new Set(rejected), new Set(['bad_envelope']));
  });
});

test('path, method, app id, signature headers and the timestamp window are refused before any body byte is read', async () => {
  await withTransport(async ({ port }) => {
    const stale = String(Math.floor(Date.now() / 1000) - 3600);
    const cases: Array<[string, Record<string, string>, number, string?]> = [
      ['no signature headers', {}, 401],
      ['malformed signature', { 'X-Signature-Ed25519': 'zz', 'X-Signature-Timestamp': now() }, 401],
      ['stale timestamp', { 'X-Signature-Ed25519': FORGED, 'X-Signature-Timestamp': stale }, 401],
      ['another app', { 'X-Bot-Appid': '42', 'X-Signature-Ed25519': FORGED, 'X-Signature-Timestamp': now() }, 401],
      ['declared too large', { 'X-Signature-Ed25519': FORGED, 'X-Signature-Timestamp': now() }, 413],
      ['unknown path', { 'X-Signature-Ed25519': FORGED, 'X-Signature-Timestamp': now() }, 404, '/elsewhere'],
      ['unparsable target', { 'X-Signature-Ed25519': FORGED, 'X-Signature-Timestamp': now() }, 404, 'http://['],
    ];
    for (const [label, headers, status, path] of cases) {
      // the body is declared but only a sliver is sent: the answer must not wait for the rest
      const declared = status === 413 ? 2 * 1024 * 1024 : 1024 * 1024;
      const { socket, answer } = rawPost(port, headers, declared, 10, path);
      assert.equal(statusOf(await answer), status, label);
      socket.destroy();
    }
  });
});

test('bodies in flight are bounded: the next stranger gets 503 at once; a body that stalls gets 408; one abandoned mid-way is counted', async () => {
  await withTransport(async ({ port, transport }) => {
    const rejected: WebhookRejection[] = [];
    transport.on('rejected', (r) => rejected.push(r.kind));
    const headers = { 'X-Signature-Ed25519': FORGED, 'X-Signature-Timestamp': now() };
    // three stalled bodies, two slots: whichever comes third is turned away without being read
    const held = [0, 1, 2].map(() => rawPost(port, headers, 1024 * 1024, 1000));
    const first = await Promise.race(held.map((h) => h.answer));
    assert.equal(statusOf(first), 503);
    // the two being read stall until the body deadline
    const rest = await Promise.all(held.map((h) => h.answer));
    assert.deepEqual(rest.map(statusOf).sort(), [408, 408, 503]);
    assert.deepEqual(rejected.sort(), ['body_timeout', 'body_timeout', 'busy']);

    const leaving = rawPost(port, headers, 1024 * 1024, 1000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    leaving.socket.destroy();
    const deadline = Date.now() + 5000;
    while (!rejected.includes('aborted')) {
      assert.ok(Date.now() < deadline, `no 'aborted' in ${rejected.join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }, { maxPendingBodies: 2, bodyTimeoutMs: 300 });
});

test('refused requests are counted by reason and logged as one line of counts per interval, not one per request', async () => {
  const logs: string[] = [];
  const transport = new WebhookTransport({
    port: 0, host: '127.0.0.1', path: '/cb', appId: APP_ID, secret: new Secret(SECRET_VALUE), rejectionLogIntervalMs: 3_600_000,
    logger: createLogger({ level: 'debug', destination: new Writable({ write: (chunk, _enc, cb) => void (logs.push(String(chunk)), cb()) }) }),
  });
  const { port } = await transport.start();
  let counted = 0;
  transport.on('rejected', () => counted++);
  const body = Buffer.from('{"op":0,"t":"C2C_MESSAGE_CREATE","d":{}}');
  const stale = String(Math.floor(Date.now() / 1000) - 3600);
  await Promise.all(Array.from({ length: 60 }, (_, i) => post(`http://127.0.0.1:${port}/cb`, body, i % 3 === 0 ? {} : i % 3 === 1 ? signWebhookRequest(platformKeys, body, stale) : signWebhookRequest(deriveKeys('forger'), body))));
  assert.equal(counted, 60);
  assert.equal(logs.filter((line) => line.includes('refused')).length, 0, 'nothing logged per request');
  // stopping reports what the interval counted so far
  await transport.stop();
  const reports = logs.map((line) => JSON.parse(line) as { msg: string; rejected?: Record<string, number>; total?: number }).filter((entry) => entry.msg === 'webhook requests refused');
  assert.equal(reports.length, 1, 'one line for the whole burst');
  assert.deepEqual(reports[0]!.rejected, { headers: 20, timestamp: 20, signature: 20 });
  assert.equal(reports[0]!.total, 60);
});

test('the tally reports at most once per interval, each report holding what came since the last', async () => {
  const reports: Array<{ counts: Partial<Record<'a' | 'b', number>>; total: number }> = [];
  const tally = new RejectionTally<'a' | 'b'>(50, (counts, total) => reports.push({ counts, total }));
  for (let i = 0; i < 1000; i++) tally.add(i % 2 ? 'a' : 'b');
  assert.equal(reports.length, 0);
  while (reports.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(reports, [{ counts: { a: 500, b: 500 }, total: 1000 }]);
  tally.add('a');
  tally.flush();
  tally.flush();
  assert.deepEqual(reports[1], { counts: { a: 1 }, total: 1 });
  assert.equal(reports.length, 2, 'nothing counted, nothing reported');
});

test('a dispatch that arrives before the bot takes events is answered 503, and its redelivery is not taken for a replay', async () => {
  const transport = new WebhookTransport({ port: 0, host: '127.0.0.1', path: '/cb', appId: APP_ID, secret: new Secret(SECRET_VALUE) });
  const { port } = await transport.listen();
  try {
    const got: GatewayDispatch[] = [];
    transport.on('dispatch', (d) => got.push(d));
    const body = Buffer.from(JSON.stringify({ op: 0, t: 'C2C_MESSAGE_CREATE', id: 'early-1', d: { id: 'm', content: 'x', author: { user_openid: 'u' } } }));
    const headers = signWebhookRequest(platformKeys, body);
    const early = await post(`http://127.0.0.1:${port}/cb`, body, headers);
    assert.equal(early.status, 503);
    // callback validation does not depend on the bot: answered at once
    const validation = Buffer.from(JSON.stringify({ op: 13, d: { plain_token: 'p', event_ts: '1' } }));
    assert.equal((await post(`http://127.0.0.1:${port}/cb`, validation, signWebhookRequest(platformKeys, validation))).status, 200);
    transport.open();
    assert.equal((await post(`http://127.0.0.1:${port}/cb`, body, headers)).status, 200, 'the same signed request, delivered again');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(got.map((d) => d.id), ['early-1']);
  } finally {
    await transport.stop();
  }
});

test('400 strangers holding 1 MiB bodies open against a real qqbot process: memory stays bounded, every refusal counted, one log line', async () => {
  const FIXTURES = fileURLToPath(new URL('./fixtures/runtime/plugins', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-webhook-flood-'));
  writeFileSync(join(dir, 'bot.yaml'), [
    `pluginsDir: ${FIXTURES}`,
    `dataDir: ${join(dir, 'data')}`,
    'metrics: { port: 0 }',
    'bots:',
    '  - { name: hook, appId: "1020000001", endpoint: simulator, transport: { webhook: { port: 0, path: /qq } }, plugins: { alpha: {} } }',
  ].join('\n'));
  const run = runQQBot(['start', 'bot.yaml'], dir);
  const sockets: Socket[] = [];
  try {
    await run.waitFor(/1\/1 bots running/);
    const port = Number(/"port":(\d+),"path":"\/qq","msg":"webhook listening"/.exec(run.output.stdout)?.[1]);
    const metricsUrl = /metrics: (http:\S+)/.exec(run.output.stdout)![1]!;
    const rssMb = () => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${run.child.pid}/status`, 'utf8'))![1]) / 1024;
    const before = rssMb();
    const CONNECTIONS = 400;
    const BODY = 1024 * 1024;
    const attempts = Array.from({ length: CONNECTIONS }, () => rawPost(port, { 'X-Signature-Ed25519': FORGED, 'X-Signature-Timestamp': now() }, BODY, BODY - 1024, '/qq'));
    sockets.push(...attempts.map((a) => a.socket));
    // all but the bodies being read are turned away at once; then hold the rest and watch memory
    let answered = 0;
    for (const a of attempts) void a.answer.then(() => answered++);
    const deadline0 = Date.now() + 30_000;
    while (answered < CONNECTIONS - 32 && Date.now() < deadline0) await new Promise((resolve) => setTimeout(resolve, 20));
    let peak = 0;
    for (let i = 0; i < 10; i++) {
      peak = Math.max(peak, rssMb());
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    console.log(`# webhook flood: ${CONNECTIONS} held connections, RSS ${before.toFixed(0)} MB before, peak ${peak.toFixed(0)} MB (+${(peak - before).toFixed(0)} MB)`);
    assert.ok(answered >= CONNECTIONS - 32, 'the connections beyond the bound were answered without being read');
    assert.ok(peak - before < 128, `RSS grew ${(peak - before).toFixed(0)} MB under ${CONNECTIONS} held bodies`);

    for (const socket of sockets) socket.destroy();
    const counts = async () => {
      const text = await (await fetch(metricsUrl)).text();
      return Object.fromEntries([...text.matchAll(/^qqbot_webhook_rejected_total\{bot="hook",reason="(\w+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
    };
    const deadline = Date.now() + 30_000;
    let seen = await counts();
    while (Object.values(seen).reduce((a, b) => a + b, 0) < CONNECTIONS && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      seen = await counts();
    }
    assert.equal(Object.values(seen).reduce((a, b) => a + b, 0), CONNECTIONS, `every connection counted once: ${JSON.stringify(seen)}`);
    assert.ok((seen.busy ?? 0) >= CONNECTIONS - 32, `busy: ${JSON.stringify(seen)}`);

    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 0, run.output.stderr);
    const reports = run.output.stdout.split('\n').filter((line) => line.includes('"msg":"webhook requests refused"')).map((line) => JSON.parse(line) as { total: number });
    assert.ok(reports.length >= 1 && reports.length <= 2, `${reports.length} report lines: one per minute and one at stop`);
    assert.equal(reports.reduce((sum, r) => sum + r.total, 0), CONNECTIONS);
    assert.doesNotMatch(run.output.stdout, /webhook handler failed/);
  } finally {
    for (const socket of sockets) socket.destroy();
    run.kill();
  }
});
