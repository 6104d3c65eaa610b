import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Secret } from '../config/secret.ts';
import { QQBotError, type ErrorCode } from '../errors.ts';
import type { Logger } from '../logging/logger.ts';
import { isLoopbackHost } from '../net/hosts.ts';
import { ConsoleAccess } from './access.ts';
import { parseChatInput } from './chat-input.ts';
import { ChatInputError, ConsoleError } from './errors.ts';
import { EventStream, sseFrame } from './event-stream.ts';
import type { ChatMessage, LiveEntry, RuntimeView } from './runtime-view.ts';

export interface ConsoleOptions {
  view: RuntimeView;
  /** 0 picks a free port (tests). */
  port: number;
  /** @defaultValue '127.0.0.1'; any other non-loopback address requires `token` */
  host?: string;
  token?: Secret;
  logger: Logger;
  /**
   * How often open pages get a fresh `state` snapshot.
   * @defaultValue 1000
   */
  stateIntervalMs?: number;
}

export interface ConsoleServer {
  /** What to print for the user: carries `?token=…` when a token is configured. Never log it. */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Recent live entries replayed to a page that just opened, so it does not start blank. */
const LIVE_BACKLOG = 200;
const MAX_BODY_BYTES = 64 * 1024;

const PAGE_DIR = new URL('./page/', import.meta.url);
const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
};
const SECURITY_HEADERS = {
  // The token may sit in the page URL: never send it on as a referrer.
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/**
 * The web console: one page plus a small JSON/SSE API over a `RuntimeView`. It only reads the
 * runtime, except `POST /api/chat`, which hands a person's message to the embedded simulator.
 */
export async function startConsole(options: ConsoleOptions): Promise<ConsoleServer> {
  const { view, logger } = options;
  const host = options.host ?? '127.0.0.1';
  if (!isLoopbackHost(host) && !options.token) {
    throw new ConsoleError(
      'CONSOLE_TOKEN_REQUIRED',
      `the console is set to listen on ${host}, which other machines can reach; set console.token in bot.yaml (at least 8 characters) or use host 127.0.0.1`,
      { host },
    );
  }
  const access = new ConsoleAccess(options.token);
  const assetQuery = options.token ? `?token=${encodeURIComponent(options.token.reveal())}` : '';
  const assets = loadAssets(assetQuery);

  const backlog: string[] = [];
  let stateTimer: NodeJS.Timeout | undefined;
  const stream = new EventStream({
    onFirst: () => {
      stateTimer = setInterval(() => stream.broadcast(stateFrame()), options.stateIntervalMs ?? 1000);
    },
    onEmpty: () => {
      clearInterval(stateTimer);
      stateTimer = undefined;
    },
  });
  const stateFrame = () => sseFrame('state', view.snapshot());
  const onLive = (entry: LiveEntry) => {
    const frame = sseFrame('live', entry);
    backlog.push(frame);
    if (backlog.length > LIVE_BACKLOG) backlog.shift();
    stream.broadcast(frame);
  };
  const onChat = (message: ChatMessage) => stream.broadcast(sseFrame('chat', message));
  view.on('live', onLive);
  view.on('chat', onChat);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://console.invalid');
    const decision = access.check(req, url.searchParams);
    if (decision === 'bad-host') return sendJson(res, 403, errorBody('CONSOLE_BAD_HOST', 'open the console through 127.0.0.1 or localhost'));
    if (decision === 'unauthorized') {
      res.setHeader('www-authenticate', 'Bearer realm="qqbot console"');
      return sendJson(res, 401, errorBody('CONSOLE_UNAUTHORIZED', 'a console token is required: open the URL printed at start-up (it ends in ?token=…)'));
    }

    const route = `${req.method} ${url.pathname}`;
    const asset = ASSETS[url.pathname];
    if (asset && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-store', ...SECURITY_HEADERS });
      res.end(req.method === 'HEAD' ? undefined : assets.get(url.pathname));
      return;
    }
    switch (route) {
      case 'GET /api/state':
        return sendJson(res, 200, view.snapshot());
      case 'GET /api/stream':
        stream.add(res, [stateFrame(), ...backlog]);
        return;
      case 'GET /api/chat': {
        if (!view.chat) return sendJson(res, 404, errorBody('CONSOLE_NO_SIMULATOR', 'no bot uses the embedded simulator'));
        const raw = url.searchParams.get('since');
        const since = raw === null ? undefined : Number(raw);
        if (since !== undefined && (!Number.isInteger(since) || since < 0)) {
          return sendJson(res, 400, errorBody('CONSOLE_BAD_INPUT', 'since must be a non-negative integer', 'since'));
        }
        return sendJson(res, 200, { messages: view.chat.history(since) });
      }
      case 'POST /api/chat':
        return postChat(req, res);
      default: {
        const known = ASSETS[url.pathname] !== undefined || KNOWN_API.has(url.pathname);
        if (known) res.setHeader('allow', url.pathname === '/api/chat' ? 'GET, POST' : 'GET');
        return sendJson(res, known ? 405 : 404, errorBody('CONSOLE_NOT_FOUND', `no route ${route}`));
      }
    }
  };

  const postChat = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!view.chat) return sendJson(res, 404, errorBody('CONSOLE_NO_SIMULATOR', 'no bot uses the embedded simulator'));
    // A JSON content type forces a CORS preflight, which this server never grants: other sites cannot post.
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      return sendJson(res, 415, errorBody('CONSOLE_BAD_INPUT', 'send the body as application/json', 'body'));
    }
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req));
    } catch (err) {
      if (err instanceof BodyTooLarge) return sendJson(res, 413, errorBody(err.code, err.message, 'body'));
      return sendJson(res, 400, errorBody('CONSOLE_BAD_INPUT', 'the body is not valid JSON', 'body'));
    }
    try {
      const input = parseChatInput(body);
      const bot = view.snapshot().bots.find((b) => b.name === input.bot);
      if (!bot) return sendJson(res, 404, errorBody('CONSOLE_UNKNOWN_BOT', `there is no bot named ${JSON.stringify(input.bot)}`, 'bot'));
      if (!bot.simulator) return sendJson(res, 404, errorBody('CONSOLE_NO_SIMULATOR', `bot ${input.bot} talks to the real platform, not the simulator`, 'bot'));
      const result = await view.chat.send(input);
      return sendJson(res, 200, result);
    } catch (err) {
      if (err instanceof ChatInputError) return sendJson(res, 400, errorBody(err.code, err.message, String(err.context.field)));
      if (err instanceof QQBotError) return sendJson(res, 502, errorBody(err.code, err.message));
      logger.error({ err }, 'console: simulator chat failed');
      return sendJson(res, 500, errorBody('CONSOLE_INTERNAL', 'the simulator could not take the message; see the runtime log'));
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error({ err, path: req.url?.split('?', 1)[0] }, 'console: request failed');
      if (!res.headersSent) sendJson(res, 500, errorBody('CONSOLE_INTERNAL', 'internal error; see the runtime log'));
      else res.destroy();
    });
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, host, () => resolve());
    });
  } catch (err) {
    view.off('live', onLive);
    view.off('chat', onChat);
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new ConsoleError('CONSOLE_LISTEN_FAILED', `the console cannot listen on ${host}:${options.port}: ${code}`, { host, port: options.port }, { cause: err });
  }

  const port = (server.address() as AddressInfo).port;
  const base = `http://${displayHost(host)}:${port}/`;
  logger.info({ url: base, auth: access.required ? 'token' : 'loopback' }, 'console listening');

  let closing: Promise<void> | undefined;
  return {
    url: base + assetQuery,
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        view.off('live', onLive);
        view.off('chat', onChat);
        clearInterval(stateTimer);
        stream.closeAll();
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

const KNOWN_API = new Set(['/api/state', '/api/stream', '/api/chat']);

/** Reads the page once at start-up; the token, when set, is written into the asset links. */
function loadAssets(assetQuery: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [path, { file }] of Object.entries(ASSETS)) {
    let text = readFileSync(new URL(file, PAGE_DIR), 'utf8');
    if (file === 'index.html') text = text.replaceAll('__ASSET_QUERY__', assetQuery);
    out.set(path, Buffer.from(text));
  }
  return out;
}

function displayHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

function errorBody(code: ErrorCode, message: string, field?: string): { error: { code: string; message: string; field?: string } } {
  return { error: field === undefined ? { code, message } : { code, message, field } };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(text);
}

class BodyTooLarge extends QQBotError {
  constructor() {
    super('CONSOLE_BAD_INPUT', `the body must be at most ${MAX_BODY_BYTES} bytes`, { field: 'body' });
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new BodyTooLarge());
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
