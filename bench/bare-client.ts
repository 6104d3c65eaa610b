/**
 * The end-to-end baseline: what a hand-written bot does with nothing between the socket and the
 * reply — `ws` + `JSON.parse` + an undici pool, one shard, no sandbox, no limits, no bookkeeping. It
 * answers every AT_MESSAGE_CREATE with a passive reply, the same body the echo plugin sends.
 *   node bench/bare-client.ts SIMULATOR_URL APP_ID SECRET
 */
import { Pool } from 'undici';
import WebSocket from 'ws';

const [base, appId, secret] = process.argv.slice(2) as [string, string, string];
const pool = new Pool(base, { connections: 32 });

async function json(method: 'GET' | 'POST', path: string, body?: unknown, auth?: string): Promise<any> {
  const res = await pool.request({
    method, path,
    headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return res.body.json();
}

const { access_token } = await json('POST', '/app/getAppAccessToken', { appId, clientSecret: secret });
const auth = `QQBot ${access_token}`;
const { url } = await json('GET', '/gateway/bot', undefined, auth);
const ws = new WebSocket(url);
let seq: number | null = null;

ws.on('message', (raw) => {
  const frame = JSON.parse(String(raw)) as { op: number; d: any; s?: number; t?: string };
  if (typeof frame.s === 'number') seq = frame.s;
  if (frame.op === 10) {
    ws.send(JSON.stringify({ op: 2, d: { token: auth, intents: 1 << 30, shard: [0, 1], properties: {} } }));
    setInterval(() => ws.send(JSON.stringify({ op: 1, d: seq })), frame.d.heartbeat_interval).unref();
    return;
  }
  if (frame.t === 'READY') process.stdout.write('bare client ready\n');
  if (frame.t === 'AT_MESSAGE_CREATE') {
    const d = frame.d as { id: string; channel_id: string; content: string };
    const text = d.content.replace(/<@!?\w+>/g, '').trim();
    void json('POST', `/channels/${d.channel_id}/messages`, { content: `echo: ${text}`, msg_id: d.id }, auth).catch(() => undefined);
  }
});

process.on('SIGTERM', () => {
  ws.close();
  void pool.close().finally(() => process.exit(0));
});
