import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startSimulator } from '../runtime/simulator/index.ts';

/**
 * Wire compatibility: the official Node SDK (`qq-guild-bot`, legacy `Bot appId.token` auth) runs
 * unchanged against the simulator, apart from its base URL.
 *
 * How the URL is redirected: the SDK has no base-URL option. Its `buildUrl()` hard-codes
 * `https://api.sgroup.qq.com` (or the sandbox host) and every HTTP call — OpenAPI calls and the
 * `/gateway/bot` lookup that yields the websocket URL — goes through its dependency
 * `resty-client`, which creates an axios instance per request and installs every request
 * middleware registered with the static `Client.useReq()`. We load that same `resty-client`
 * module (resolved from the SDK's own location, so it is the instance the SDK uses) and register
 * one middleware that swaps the production origin for the simulator's. The websocket URL then
 * comes from the simulator's `/gateway/bot` answer, so no other redirection is needed.
 */
const requireFromHere = createRequire(import.meta.url);
const sdkPath = requireFromHere.resolve('qq-guild-bot');

/**
 * The SDK logs `[CLIENT] …` lines through its own bundled copy of loglevel, set to `trace`, and
 * exposes neither the logger nor a level option. loglevel binds `console.<method>` once, when the
 * SDK module loads. So the SDK is loaded while those console methods point at a collector, and the
 * real console is put back right after: the SDK behaves the same, its chatter stays out of the
 * TAP output, and the test can still read it.
 */
const sdkLog: string[] = [];
const sdk = loadQuietly(() => requireFromHere('qq-guild-bot')) as {
  createOpenAPI(config: Record<string, unknown>): { messageApi: { postMessage(channelId: string, message: Record<string, unknown>): Promise<{ data: { id: string; content: string } }> } };
  createWebsocket(config: Record<string, unknown>): import('node:events').EventEmitter & { disconnect(): void };
  SessionEvents: Record<string, string>;
};
function loadQuietly<T>(load: () => T): T {
  const methods = ['trace', 'debug', 'log', 'info', 'warn', 'error'] as const;
  const saved = methods.map((m) => [m, console[m]] as const);
  for (const m of methods) console[m] = (...args: unknown[]) => { sdkLog.push(args.map(String).join(' ')); };
  try {
    return load();
  } finally {
    for (const [m, fn] of saved) console[m] = fn;
  }
}

const resty = createRequire(sdkPath)('resty-client') as { useReq(onFulfilled: (config: { url?: string; proxy?: unknown }) => unknown): void };

const APP = '1020000001';
const LEGACY = 'simulator-token';
let simulatorOrigin = '';
resty.useReq((config) => {
  if (config.url) config.url = config.url.replace(/^https:\/\/(sandbox\.)?api\.sgroup\.qq\.com/, simulatorOrigin);
  config.proxy = false; // loopback only, whatever the environment says
  return config;
});

test('qq-guild-bot connects with AT_MESSAGE intents, receives a posted message and its postMessage reply lands in the outbox', async () => {
  // a short heartbeat interval so the SDK's own heartbeat timer is gone soon after disconnect
  const sim = await startSimulator({ heartbeatIntervalMs: 500 });
  simulatorOrigin = sim.url;
  const config = { appID: APP, token: LEGACY, intents: ['PUBLIC_GUILD_MESSAGES'], sandbox: false };
  const client = sdk.createOpenAPI(config);
  const ws = sdk.createWebsocket(config);
  try {
    await waitFor(() => sim.sessions().some((s) => s.connected && s.lastHeartbeatAt !== null));
    const [session] = sim.sessions();
    assert.equal(session!.intents, 1 << 30, 'the SDK identified with PUBLIC_GUILD_MESSAGES only');
    assert.equal(sim.sessionLog()[0]!.outcome, 'ok');
    assert.ok(sdkLog.some((line) => line.startsWith('[CLIENT]')), 'the SDK logged, into the collector rather than the TAP output');

    const received = new Promise<{ eventType: string; eventId: string; msg: { id: string; channel_id: string; content: string } }>((resolve) => {
      ws.on('PUBLIC_GUILD_MESSAGES', resolve);
    });
    const posted = (await (await fetch(`${sim.url}/_simulator/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'guild_at', content: 'ping from the control API' }),
    })).json()) as { id: string; event_id: string };
    const event = await received;
    assert.equal(event.eventType, 'AT_MESSAGE_CREATE');
    assert.equal(event.eventId, posted.event_id);
    assert.equal(event.msg.id, posted.id);
    assert.match(event.msg.content, /ping from the control API$/);

    const reply = await client.messageApi.postMessage(event.msg.channel_id, { content: 'pong from qq-guild-bot', msg_id: event.msg.id });
    assert.equal(reply.data.content, 'pong from qq-guild-bot');
    const outbox = sim.outbox();
    assert.equal(outbox.length, 1);
    assert.equal(outbox[0]!.body.content, 'pong from qq-guild-bot');
    assert.equal(outbox[0]!.msg_id, posted.id);
    assert.equal(outbox[0]!.passive, true);
    assert.deepEqual(outbox[0]!.target, { channel_id: event.msg.channel_id });
    assert.equal(outbox[0]!.id, reply.data.id);
  } finally {
    // the SDK reconnects on every close; stop it listening to its own session events first
    ws.removeAllListeners();
    ws.disconnect();
    await sim.close();
  }
});

async function waitFor(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
