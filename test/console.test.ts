import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdirSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { chromium, type Browser } from 'playwright-core';
import { Secret } from '../runtime/config/secret.ts';
import { createLogger, silentLogger } from '../runtime/logging/logger.ts';
import { ConsoleError } from '../runtime/console/errors.ts';
import { startConsole, type ConsoleServer } from '../runtime/console/server.ts';
import type { BotView, ChatInput, ChatMessage, LiveEntry, RuntimeView, RuntimeViewEvents } from '../runtime/console/runtime-view.ts';

const TOKEN = 'console-token-7f3a9c';

/**
 * A small but real RuntimeView: a fixed runtime picture, and a chat that records what a person
 * sends and answers like an echo plugin would (asynchronously, as the simulator does).
 */
/** the demo bot's coordination Redis went away five seconds before the test started */
const REDIS_DOWN_SINCE = Date.now() - 5_000;

class TestRuntimeView extends EventEmitter<RuntimeViewEvents> implements RuntimeView {
  readonly sent: ChatInput[] = [];
  readonly messages: ChatMessage[] = [];
  readonly startedAt = Date.now() - 125_000;
  chat?: RuntimeView['chat'];

  constructor(withChat = true) {
    super();
    if (withChat) {
      this.chat = {
        send: async (input) => {
          this.sent.push(input);
          const id = `msg-${this.sent.length}`;
          this.#post({ bot: input.bot, from: 'user', kind: input.kind, content: input.content });
          this.live({ at: Date.now(), bot: input.bot, kind: 'event', text: `${eventType(input.kind)} from ${input.user?.username ?? 'console'}: ${input.content}` });
          setImmediate(() => {
            this.#post({ bot: input.bot, from: 'bot', kind: input.kind, content: `echo: ${input.content}` });
            this.live({ at: Date.now(), bot: input.bot, kind: 'reply', text: `echo replied to ${id}` });
          });
          return { id };
        },
        history: (since = 0) => this.messages.filter((m) => m.n > since),
      };
    }
  }

  live(entry: LiveEntry): void {
    this.emit('live', entry);
  }

  snapshot(): { version: string; startedAt: number; bots: BotView[] } {
    return {
      version: '0.1.0',
      startedAt: this.startedAt,
      bots: [
        {
          name: 'demo',
          role: 'all',
          appId: '1020000001',
          state: 'running',
          transport: 'websocket',
          intents: ['GUILD_MESSAGES', 'PUBLIC_GUILD_MESSAGES', 'GROUP_AND_C2C_EVENT'],
          simulator: true,
          shards: [
            { id: 0, count: 4, state: 'ready', seq: 42, latencyMs: 12, reconnects: 0 },
            { id: 1, count: 4, state: 'resuming', seq: 17, reconnects: 2 },
          ],
          cluster: {
            processId: 'host-a:101:beef',
            shardCount: 4,
            processes: [
              { id: 'host-a:101:beef', host: 'host-a', pid: 101, startedAt: 1, shards: [0, 1], self: true, stale: false },
              { id: 'host-b:202:cafe', host: 'host-b', pid: 202, startedAt: 1, shards: [2], self: false, stale: false },
            ],
            unowned: [3],
            updatedAt: 1,
            redis: { up: false, url: 'redis://127.0.0.1:6379/', outages: 1, downSince: REDIS_DOWN_SINCE },
          },
          plugins: [
            { name: 'echo', version: 3, status: 'running', events: 120, errors: 0, cpuMs: 48.2, heapUsedBytes: 2_400_000, restarts: 0, queued: 0, queuedBytes: 0, dropped: {}, sendFailures: {}, source: 'folder' },
            { name: 'dice', version: 1, status: 'quarantined', events: 9, errors: 5, cpuMs: 1500, heapUsedBytes: 9_800_000, restarts: 3, queued: 0, queuedBytes: 0, dropped: { quarantined: 4, backlog_full: 2 }, sendFailures: { E_REPLY_WINDOW: 1 }, lastError: 'CPU time limit (50 ms) exceeded in handler for AT_MESSAGE_CREATE', source: 'folder' },
            { name: 'qqbot-plugin-mod', version: 2, status: 'running', events: 4, errors: 0, cpuMs: 3, heapUsedBytes: 1_200_000, restarts: 0, queued: 0, queuedBytes: 0, dropped: {}, sendFailures: {}, source: 'npm', pending: ['members.manage'], approve: 'qqbot plugin approve qqbot-plugin-mod' },
          ],
        },
        {
          name: 'prod',
          role: 'all',
          appId: '1020000002',
          state: 'failed',
          error: 'gateway refused the credentials (close 4004)',
          transport: 'webhook',
          intents: [],
          simulator: false,
          shards: [],
          plugins: [],
        },
      ],
    };
  }

  #post(m: Omit<ChatMessage, 'n' | 'at'>): void {
    const message: ChatMessage = { ...m, n: this.messages.length + 1, at: Date.now() };
    this.messages.push(message);
    this.emit('chat', message);
  }
}

function eventType(kind: ChatInput['kind']): string {
  return { guild_at: 'AT_MESSAGE_CREATE', guild: 'MESSAGE_CREATE', direct: 'DIRECT_MESSAGE_CREATE', group_at: 'GROUP_AT_MESSAGE_CREATE', c2c: 'C2C_MESSAGE_CREATE' }[kind];
}

/** Collects log lines so tests can assert what reached the log. */
function captureLogger() {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (line: string) => void lines.push(line) } });
  return { logger, lines };
}

async function json(res: Response): Promise<any> {
  return res.json();
}

function postChat(base: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(new URL('/api/chat', base), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Reads Server-Sent Events from a fetch body; `next(event)` waits for the next frame of that type. */
function sseReader(res: Response) {
  const frames: { event: string; data: any }[] = [];
  const waiters: { event: string; resolve: (d: any) => void }[] = [];
  let cursor = 0;
  const pump = async () => {
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const raw = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const event = /^event: (.*)$/m.exec(raw)?.[1];
        const data = /^data: (.*)$/m.exec(raw)?.[1];
        if (event && data !== undefined) frames.push({ event, data: JSON.parse(data) });
        drain();
      }
    }
  };
  const drain = () => {
    for (let i = 0; i < waiters.length; ) {
      const w = waiters[i]!;
      const idx = frames.findIndex((f, j) => j >= cursor && f.event === w.event);
      if (idx >= 0) {
        cursor = idx + 1;
        waiters.splice(i, 1);
        w.resolve(frames[idx]!.data);
      } else i++;
    }
  };
  const done = pump().catch(() => {});
  return {
    frames,
    done,
    next(event: string, timeoutMs = 10_000): Promise<any> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${event} frame within ${timeoutMs} ms; got ${frames.map((f) => f.event).join(',')}`)), timeoutMs);
        waiters.push({ event, resolve: (d) => { clearTimeout(timer); resolve(d); } });
        drain();
      });
    },
  };
}

function rawGet(port: number, path: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

test('loopback console without a token serves the page, state and chat history', async (t) => {
  const view = new TestRuntimeView();
  const console_ = await startConsole({ view, port: 0, logger: silentLogger });
  t.after(() => console_.close());

  assert.equal(console_.url, `http://127.0.0.1:${console_.port}/`);
  const page = await fetch(console_.url);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
  assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
  const html = await page.text();
  for (const id of ['chat-input', 'chat-send', 'chat-messages', 'live-log', 'bots']) assert.ok(html.includes(`id="${id}"`), id);
  assert.ok(html.includes('src="console.js"'), 'no token, no query on assets');
  for (const asset of ['console.js', 'console.css']) {
    const res = await fetch(new URL(asset, console_.url));
    assert.equal(res.status, 200, asset);
    assert.ok((await res.text()).length > 100);
  }
  // nothing is fetched from elsewhere: no CDNs, no external fonts
  assert.doesNotMatch(html, /https?:\/\//);

  const state = await json(await fetch(new URL('/api/state', console_.url)));
  assert.deepEqual(state, JSON.parse(JSON.stringify(view.snapshot())));

  assert.equal((await postChat(console_.url, { bot: 'demo', kind: 'c2c', content: 'one' })).status, 200);
  assert.equal((await postChat(console_.url, { bot: 'demo', kind: 'group_at', content: 'two', user: { id: 'u1', username: 'Ann' } })).status, 200);
  assert.deepEqual(view.sent.map((s) => s.content), ['one', 'two']);
  assert.deepEqual(view.sent[1]!.user, { id: 'u1', username: 'Ann' });
  // the bot answers asynchronously; wait for both replies through the view, then read history
  await new Promise<void>((resolve) => {
    const check = () => (view.messages.filter((m) => m.from === 'bot').length === 2 ? resolve() : view.once('chat', check));
    check();
  });
  const all = await json(await fetch(new URL('/api/chat', console_.url)));
  assert.deepEqual(all.messages.map((m: ChatMessage) => `${m.from}:${m.content}`).sort(), ['bot:echo: one', 'bot:echo: two', 'user:one', 'user:two']);
  const since = await json(await fetch(new URL('/api/chat?since=2', console_.url)));
  assert.deepEqual(since.messages.map((m: ChatMessage) => m.n), [3, 4]);
  const badSince = await fetch(new URL('/api/chat?since=abc', console_.url));
  assert.equal(badSince.status, 400);
  assert.equal((await json(badSince)).error.field, 'since');

  assert.equal((await fetch(new URL('/nope', console_.url))).status, 404);
  assert.equal((await fetch(new URL('/api/state', console_.url), { method: 'DELETE' })).status, 405);
});

test('POST /api/chat names the bad field, and answers 404 without a simulator bot', async (t) => {
  const view = new TestRuntimeView();
  const console_ = await startConsole({ view, port: 0, logger: silentLogger });
  t.after(() => console_.close());

  const cases: [unknown, number, string][] = [
    [{ kind: 'c2c', content: 'x' }, 400, 'bot'],
    [{ bot: 'demo', kind: 'telegram', content: 'x' }, 400, 'kind'],
    [{ bot: 'demo', kind: 'c2c', content: '   ' }, 400, 'content'],
    [{ bot: 'demo', kind: 'c2c', content: 7 }, 400, 'content'],
    [{ bot: 'demo', kind: 'c2c', content: 'x'.repeat(5000) }, 400, 'content'],
    [{ bot: 'demo', kind: 'c2c', content: 'x', user: { id: 'u' } }, 400, 'user'],
    [[1, 2], 400, 'body'],
    ['{not json', 400, 'body'],
    [{ bot: 'ghost', kind: 'c2c', content: 'x' }, 404, 'bot'],
    [{ bot: 'prod', kind: 'c2c', content: 'x' }, 404, 'bot'],
  ];
  for (const [body, status, field] of cases) {
    const res = await postChat(console_.url, body);
    assert.equal(res.status, status, JSON.stringify(body).slice(0, 80));
    assert.equal((await json(res)).error.field, field, JSON.stringify(body).slice(0, 80));
  }
  // a form post (no JSON content type) from another site is refused
  const form = await fetch(new URL('/api/chat', console_.url), { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"bot":"demo","kind":"c2c","content":"x"}' });
  assert.equal(form.status, 415);
  assert.equal(view.sent.length, 0, 'nothing invalid reached the simulator');

  const bare = new TestRuntimeView(false);
  const noSim = await startConsole({ view: bare, port: 0, logger: silentLogger });
  t.after(() => noSim.close());
  assert.equal((await postChat(noSim.url, { bot: 'demo', kind: 'c2c', content: 'x' })).status, 404);
  assert.equal((await fetch(new URL('/api/chat', noSim.url))).status, 404);
});

test('the event stream sends state, replays recent live entries, and relays live and chat', async (t) => {
  const view = new TestRuntimeView();
  const console_ = await startConsole({ view, port: 0, logger: silentLogger, stateIntervalMs: 100 });
  t.after(() => console_.close());
  view.live({ at: 1, bot: 'demo', kind: 'state', text: 'shard 0 ready' });

  const ac = new AbortController();
  t.after(() => ac.abort());
  const res = await fetch(new URL('/api/stream', console_.url), { signal: ac.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const sse = sseReader(res);

  const first = await sse.next('state');
  assert.equal(first.bots[0].name, 'demo');
  assert.equal((await sse.next('live')).text, 'shard 0 ready', 'backlog replayed');

  view.live({ at: 2, bot: 'demo', kind: 'error', text: 'dice threw' });
  assert.equal((await sse.next('live')).text, 'dice threw');

  assert.equal((await postChat(console_.url, { bot: 'demo', kind: 'guild_at', content: 'ping' })).status, 200);
  const user = await sse.next('chat');
  const bot = await sse.next('chat');
  assert.deepEqual([user.from, user.content], ['user', 'ping']);
  assert.deepEqual([bot.from, bot.content], ['bot', 'echo: ping']);

  // periodic snapshots keep coming while the page is open
  await sse.next('state');
  await sse.next('state');
  ac.abort();
  await sse.done;
});

test('with a token, every request must carry it and the token never reaches the log', async (t) => {
  const view = new TestRuntimeView();
  const { logger, lines } = captureLogger();
  const console_ = await startConsole({ view, port: 0, logger, token: new Secret(TOKEN) });
  t.after(() => console_.close());

  assert.equal(console_.url, `http://127.0.0.1:${console_.port}/?token=${TOKEN}`);
  const base = `http://127.0.0.1:${console_.port}`;
  for (const path of ['/', '/console.js', '/api/state', '/api/stream', '/api/chat']) {
    const res = await fetch(base + path);
    assert.equal(res.status, 401, path);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.ok(!(await res.text()).includes(TOKEN));
  }
  assert.equal((await fetch(`${base}/api/state`, { headers: { authorization: 'Bearer wrong-token' } })).status, 401);
  assert.equal((await fetch(`${base}/api/state?token=${TOKEN}x`)).status, 401);
  assert.equal((await postChat(base, { bot: 'demo', kind: 'c2c', content: 'x' })).status, 401);
  // the query form is for GETs only (links, EventSource); a POST must use the header
  assert.equal((await postChat(`${base}/?token=${TOKEN}`, { bot: 'demo', kind: 'c2c', content: 'x' })).status, 401);
  assert.equal(view.sent.length, 0);

  assert.equal((await fetch(`${base}/api/state`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
  assert.equal((await fetch(`${base}/api/state?token=${TOKEN}`)).status, 200);
  assert.equal((await postChat(base, { bot: 'demo', kind: 'c2c', content: 'x' }, { authorization: `Bearer ${TOKEN}` })).status, 200);
  const page = await fetch(console_.url);
  assert.equal(page.status, 200);
  assert.ok((await page.text()).includes(`src="console.js?token=${TOKEN}"`), 'assets are linked with the token');

  assert.ok(lines.some((l) => l.includes('console listening')));
  for (const line of lines) assert.ok(!line.includes(TOKEN), `token in log: ${line}`);
});

test('a non-loopback bind needs a token; without a token, only loopback Host names are served', async (t) => {
  const { logger, lines } = captureLogger();
  for (const host of ['0.0.0.0', '::', '192.168.1.20']) {
    await assert.rejects(startConsole({ view: new TestRuntimeView(), port: 0, host, logger }), (err: unknown) => {
      assert.ok(err instanceof ConsoleError);
      assert.equal(err.code, 'CONSOLE_TOKEN_REQUIRED');
      assert.match(err.message, /console\.token/);
      assert.equal(err.context.host, host);
      return true;
    });
  }
  assert.equal(lines.length, 0, 'refused before listening');

  const open = await startConsole({ view: new TestRuntimeView(), port: 0, host: '0.0.0.0', token: new Secret(TOKEN), logger });
  t.after(() => open.close());
  assert.equal(open.url, `http://127.0.0.1:${open.port}/?token=${TOKEN}`);
  assert.equal((await fetch(`http://127.0.0.1:${open.port}/api/state`)).status, 401);
  assert.equal((await fetch(`http://127.0.0.1:${open.port}/api/state`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);

  // DNS rebinding: a foreign name pointing at 127.0.0.1 must not reach a token-less console
  const local = await startConsole({ view: new TestRuntimeView(), port: 0, logger: silentLogger });
  t.after(() => local.close());
  assert.equal(await rawGet(local.port, '/api/state', `localhost:${local.port}`), 200);
  assert.equal(await rawGet(local.port, '/api/state', `127.0.0.1:${local.port}`), 200);
  assert.equal(await rawGet(local.port, '/api/state', `evil.example:${local.port}`), 403);
});

test('close() ends open event streams and releases the port', async () => {
  const view = new TestRuntimeView();
  const console_ = await startConsole({ view, port: 0, logger: silentLogger });
  const res = await fetch(new URL('/api/stream', console_.url));
  const sse = sseReader(res);
  await sse.next('state');
  await console_.close();
  await sse.done; // the stream ended from the server side
  assert.equal(view.listenerCount('live'), 0);
  assert.equal(view.listenerCount('chat'), 0);
  await assert.rejects(fetch(console_.url));
});

test('browser: the console shows shards and plugins, and a chat message gets the bot reply', async (t) => {
  let browser: Browser;
  try {
    statSync('/usr/bin/chromium');
  } catch {
    assert.fail('Debian Chromium is missing at /usr/bin/chromium: apt-get update && apt-get install -y chromium');
  }
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(() => browser.close());

  await t.test('without a token (loopback)', async (t) => {
    const view = new TestRuntimeView();
    const console_: ConsoleServer = await startConsole({ view, port: 0, logger: silentLogger });
    t.after(() => console_.close());
    const page = await browser.newPage({ viewport: { width: 1360, height: 820 } });
    t.after(() => page.close());
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(String(err)));

    await page.goto(console_.url);
    await page.locator('tr[data-shard]').first().waitFor();
    assert.equal(await page.locator('tr[data-bot="demo"][data-shard]').count(), 2);
    assert.match(await page.locator('tr[data-bot="demo"][data-shard="1"]').innerText(), /resuming/);
    // Redis sessions: every process of the bot with its shards, and Redis being down
    assert.equal(await page.locator('tr[data-bot="demo"][data-process]').count(), 2);
    assert.match(await page.locator('tr[data-process="host-a:101:beef"]').innerText(), /this process[\s\S]*0, 1/i);
    assert.match(await page.locator('tr[data-process="host-b:202:cafe"]').innerText(), /host-b[\s\S]*pid 202[\s\S]*2/);
    assert.match(await page.locator('article[data-bot="demo"] [data-unowned]').innerText(), /shard 3/);
    assert.match(await page.locator('article[data-bot="demo"] [data-redis="down"]').innerText(), /redis down for \d+s/i);
    assert.equal(await page.locator('tr[data-plugin]').count(), 3);
    // a pending permission request shows on its plugin and in the summary, with the command that grants it
    assert.match(await page.locator('tr[data-plugin="qqbot-plugin-mod"][data-pending="true"]').innerText(), /awaiting approval: members\.manage — run qqbot plugin approve qqbot-plugin-mod/);
    assert.match(await page.locator('#summary').innerText(), /1 permission request awaiting approval/);
    assert.match(await page.locator('tr[data-plugin="echo"]').innerText(), /running/);
    assert.equal(await page.locator('tr[data-plugin="dice"]').getAttribute('class'), 'row-bad', 'quarantined plugin is highlighted');
    assert.match(await page.locator('tr[data-plugin="dice"]').innerText(), /quarantined/);
    assert.match(await page.locator('article[data-bot="prod"]').innerText(), /close 4004/);
    await page.locator('#conn[data-state="live"]').waitFor();

    // only the simulator bot is offered in the chat pane
    assert.deepEqual(await page.locator('#chat-bot option').allTextContents(), ['demo']);
    await page.selectOption('#chat-kind', 'group_at');
    await page.fill('#chat-input', 'hello bot');
    await page.click('#chat-send');
    const reply = page.locator('#chat-messages li[data-from="bot"]');
    await reply.first().waitFor();
    assert.match(await reply.first().innerText(), /echo: hello bot/);
    assert.match(await page.locator('#chat-messages li[data-from="user"]').first().innerText(), /hello bot/);
    // the POST answer and the streamed reply race; the input clears when the POST is answered
    await page.waitForFunction("document.getElementById('chat-input').value === ''");
    assert.deepEqual(view.sent.map((s) => [s.bot, s.kind, s.content]), [['demo', 'group_at', 'hello bot']]);

    // the live log shows the entries the runtime emitted, newest first
    await page.locator('#live-log li[data-kind="reply"]').first().waitFor();
    assert.equal(await page.locator('#live-log li').first().getAttribute('data-kind'), 'reply');

    // a second exchange for a fuller screenshot
    await page.selectOption('#chat-kind', 'c2c');
    await page.fill('#chat-input', '/roll 2d6');
    await page.press('#chat-input', 'Enter');
    await page.locator('#chat-messages li[data-from="bot"]').nth(1).waitFor();
    view.live({ at: Date.now(), bot: 'demo', kind: 'error', text: 'dice quarantined after 3 restarts' });
    await page.locator('#live-log li[data-kind="error"]').first().waitFor();

    mkdirSync('test-artifacts', { recursive: true });
    await page.screenshot({ path: 'test-artifacts/console.png', fullPage: true });
    assert.deepEqual(pageErrors, []);
  });

  await t.test('with a token: the printed URL opens the console and chat works', async (t) => {
    const view = new TestRuntimeView();
    const console_ = await startConsole({ view, port: 0, logger: silentLogger, token: new Secret(TOKEN) });
    t.after(() => console_.close());
    const page = await browser.newPage();
    t.after(() => page.close());

    const denied = await page.goto(`http://127.0.0.1:${console_.port}/`);
    assert.equal(denied?.status(), 401);

    await page.goto(console_.url);
    await page.locator('tr[data-plugin="echo"]').waitFor();
    await page.fill('#chat-input', 'with token');
    await page.click('#chat-send');
    await page.locator('#chat-messages li[data-from="bot"]').first().waitFor();
    assert.match(await page.locator('#chat-messages li[data-from="bot"]').first().innerText(), /echo: with token/);
  });
});
