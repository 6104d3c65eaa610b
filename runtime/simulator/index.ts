import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { WebSocketServer } from 'ws';
import { silentLogger, type Logger } from '../logging/logger.ts';
import { controlRoutes, type ControlTarget } from './control.ts';
import { ControlAccess } from './control-access.ts';
import { ControlInputError } from './errors.ts';
import { parseFault, type FaultInput } from './faults.ts';
import { Gateway, type SessionChange, type SessionInfo } from './gateway.ts';
import { epochNow, MessageLedger, type ReplyScene } from './message-ledger.ts';
import { BURST_GUILD_BASE, buildMessageEvent, parseBurst, parsePostMessage, type BurstInput, type PostMessageInput } from './message-events.ts';
import { OpenApi } from './openapi.ts';
import { resolveOptions, type SimulatorOptions } from './options.ts';
import type { ResolvedOptions } from './resolved-options.ts';
import type { SimulatorBot } from './simulator-bot.ts';
import { Outbox, type OutboxEntry } from './outbox.ts';
import { CODES, PlatformError } from './platform-error.ts';
import { ProactiveQuota } from './proactive-quota.ts';
import type { RouteTable } from './route-table.ts';
import type { SessionLogEntry } from './session-log.ts';
import type { SimulatorState } from './state.ts';
import { TokenIssuer } from './token-issuer.ts';
import { WebhookDelivery, type WebhookLogEntry, type WebhookRegistration } from './webhook-delivery.ts';
import { World, type User } from './world.ts';
import { sleep } from '../time/sleep.ts';

export { parseBotFlag, DEFAULT_BOT } from './simulator-bot.ts';
export { DEFAULT_PROACTIVE_QUOTAS } from './proactive-quota.ts';
export type { SimulatorOptions } from './options.ts';
export type { SimulatorBot } from './simulator-bot.ts';
export type { ReplyScene } from './message-ledger.ts';
export type { ProactiveMode, ProactiveQuotas } from './proactive-quota.ts';
export type { OutboxEntry } from './outbox.ts';
export type { SessionInfo } from './gateway.ts';
export type { SessionLogEntry } from './session-log.ts';
export type { FaultInput } from './faults.ts';
export type { PostMessageInput, PostMessageKind } from './message-events.ts';
export type { SimulatorState } from './state.ts';
export type { WebhookLogEntry, WebhookRegistration } from './webhook-delivery.ts';
export { WebhookSigner, seedFromSecret } from './webhook-signature.ts';
export { SimulatorConfigError, ControlInputError } from './errors.ts';
export { KNOWN_INTENT_BITS } from './intents.ts';

/** A dispatched event: `sessions` and `webhooks` count the deliveries it got. */
export interface SimulatorDispatch {
  appId: string | null;
  t: string;
  d: unknown;
  id: string;
  sessions: number;
  webhooks: number;
}

/** What the simulator reports, as events and on its control stream (`GET /_simulator/stream`). */
export interface SimulatorEvents {
  outbox: [entry: OutboxEntry];
  session: [update: { change: SessionChange; session: SessionInfo }];
  event: [dispatch: SimulatorDispatch];
  identify: [entry: SessionLogEntry];
  webhook: [entry: WebhookLogEntry];
}

export type SimulatorEventName = keyof SimulatorEvents;

export interface Simulator {
  /** http base, e.g. http://127.0.0.1:PORT: OpenAPI base and token host (`${url}/app/getAppAccessToken`) */
  readonly url: string;
  /** ws://127.0.0.1:PORT/websocket */
  readonly gatewayUrl: string;
  readonly port: number;
  close(): Promise<void>;
  /** Injects a user message and dispatches it; throws ControlInputError on bad input. */
  postMessage(input: PostMessageInput): { id: string; event_id: string };
  /** Injects `count` messages at once, spread over `targets` channels, groups or users. */
  postBurst(input: Partial<BurstInput> & Pick<BurstInput, 'kind' | 'count'>): { ids: string[] };
  /** Dispatches any event type as-is to `appId` (every bot when undefined). */
  dispatchEvent(appId: string | undefined, t: string, d: unknown): { event_id: string };
  outbox(since?: number): OutboxEntry[];
  /** urls, bots, proactive counts, OpenAPI requests in flight (now and most at once) */
  info(): Record<string, unknown>;
  sessions(): SessionInfo[];
  sessionLog(): SessionLogEntry[];
  fault(input: FaultInput): void;
  registerWebhook(appId: string, url: string): Promise<WebhookRegistration>;
  webhookLog(since?: number): WebhookLogEntry[];
  /** See SimulatorState: pass it as `options.state` to a new simulator to keep sessions resumable. */
  exportState(): SimulatorState;
  on<K extends SimulatorEventName>(event: K, listener: (...args: SimulatorEvents[K]) => void): this;
  off<K extends SimulatorEventName>(event: K, listener: (...args: SimulatorEvents[K]) => void): this;
}

const MAX_BODY_BYTES = 1 << 20;
/** A stream consumer this far behind (a stalled console tab during a bench) is cut off rather than buffered for. */
const MAX_STREAM_BACKLOG_BYTES = 8 << 20;
/**
 * Deeper JSON is refused: JSON.parse takes any depth but JSON.stringify overflows the stack at a few
 * thousand levels, and everything accepted is re-serialised later (frames, outbox, stream, state).
 */
const MAX_JSON_DEPTH = 100;

/** How each API answers a body it will not read: the OpenAPI with 400/413 + a platform code, the control API with 400. */
type BodyRefusal = (status: number, message: string) => Error;

class SimulatorImpl extends EventEmitter<SimulatorEvents> implements Simulator, ControlTarget {
  readonly #options: ResolvedOptions;
  readonly #logger: Logger;
  readonly #server: Server;
  readonly #wss: WebSocketServer;
  readonly #tokens: TokenIssuer;
  readonly #world: World;
  readonly #ledger: MessageLedger;
  readonly #outbox: Outbox;
  readonly #proactive: ProactiveQuota;
  readonly #gateway: Gateway;
  readonly #openapi: OpenApi;
  readonly #webhooks: WebhookDelivery;
  readonly #control: RouteTable<(ctx: { params: Record<string, string>; query: URLSearchParams; body: unknown }) => unknown>;
  readonly #controlAccess: ControlAccess;
  readonly #bots: Map<string, SimulatorBot>;
  readonly #botUsers: Map<string, User>;
  readonly #streams = new Set<ServerResponse>();
  /** OpenAPI requests being answered now, and the most at once: shows whether a client runs them concurrently */
  readonly #apiInFlight = { now: 0, max: 0 };
  #nextEventId: number;
  #port = 0;
  #closed: Promise<void> | undefined;

  constructor(options: ResolvedOptions, logger: Logger, state: SimulatorState | undefined) {
    super();
    this.#options = options;
    this.#logger = logger;
    this.#bots = new Map(options.bots.map((b) => [b.appId, b]));
    this.#botUsers = new Map(options.bots.map((b) => [b.appId, { id: botUserId(b.appId), username: b.username ?? `simulator-bot-${b.appId}`, avatar: '', bot: true }]));
    this.#tokens = new TokenIssuer(options.bots, options.tokenLifetimeSec, state?.tokens);
    this.#world = new World([...this.#botUsers.values()], state?.world);
    this.#ledger = new MessageLedger(options.replyWindowMs, state?.ledger);
    this.#outbox = new Outbox(state?.outbox);
    this.#proactive = new ProactiveQuota(options.proactive, options.proactiveQuotas, state?.proactive);
    this.#nextEventId = state?.nextEventId ?? 1;
    this.#gateway = new Gateway({
      options, tokens: this.#tokens, logger, restored: state?.gateway,
      botUser: (appId) => this.#botUser(appId),
      hooks: {
        session: (change, session) => this.#publish('session', { change, session }),
        identify: (entry) => this.#publish('identify', entry),
      },
    });
    this.#openapi = new OpenApi({
      world: this.#world, ledger: this.#ledger, outbox: this.#outbox, tokens: this.#tokens, proactive: this.#proactive, gateway: this.#gateway, options,
      gatewayUrl: () => this.gatewayUrl, botUser: (appId) => this.#botUser(appId), onOutbox: (entry) => this.#publish('outbox', entry),
    });
    this.#webhooks = new WebhookDelivery({ bots: options.bots, maxAttempts: options.webhookMaxAttempts, logger, restored: state?.webhooks, onLog: (e) => this.#publish('webhook', e) });
    this.#control = controlRoutes(this);
    this.#controlAccess = new ControlAccess([...options.allowedHosts, ...(isIP(options.host) === 0 ? [options.host] : [])]);
    this.#server = createServer((req, res) => {
      this.#onRequest(req, res).catch((err: unknown) => {
        this.#logger.error({ err }, 'simulator request failed');
        if (!res.headersSent) sendJson(res, 500, { code: 500, message: 'simulator internal error' });
        else res.destroy();
      });
    });
    // ws itself refuses frames above this ceiling with 1009 before the gateway sees them; frames between
    // maxFrameBytes and the ceiling reach the gateway and close with the platform's 4002
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: Math.max(options.maxFrameBytes * 16, 1 << 20), skipUTF8Validation: true });
    this.#gateway.attach(this.#wss);
    this.#server.on('upgrade', (req, socket, head) => {
      socket.on('error', () => socket.destroy());
      // an 'upgrade' listener that throws takes the whole process down: parse defensively
      const path = requestUrl(req)?.pathname;
      if (path === undefined) {
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
        return;
      }
      if (path !== '/websocket' && path !== '/websocket/') {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
        return;
      }
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#wss.emit('connection', ws, req));
    });
    this.#server.on('clientError', (_err, socket) => socket.destroy());
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#options.port, this.#options.host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#port = (this.#server.address() as AddressInfo).port;
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `http://${hostForUrl(this.#options.host)}:${this.#port}`;
  }

  get gatewayUrl(): string {
    return `ws://${hostForUrl(this.#options.host)}:${this.#port}/websocket`;
  }

  postMessage(input: PostMessageInput): { id: string; event_id: string } {
    return this.postMessageUnchecked(input);
  }

  postMessageUnchecked(raw: unknown): { id: string; event_id: string } {
    const input = parsePostMessage(raw);
    const bot = this.#botFor(input.appId);
    const id = this.#world.newId(input.kind === 'group_at' || input.kind === 'c2c' ? 'ROBOT1.0_' : '08');
    const event = buildMessageEvent(this.#world, this.#botUser(bot.appId), input, id);
    this.#ledger.recordInbound({ id, appId: bot.appId, scene: event.scene, target: event.target, at: epochNow(), kind: 'message' });
    if (event.scene === 'guild' || event.scene === 'direct') this.#openapi.rememberMessage(event.d);
    const { event_id } = this.#dispatch(bot.appId, event.t, event.d, false);
    return { id, event_id };
  }

  /**
   * `count` user messages at once, spread round-robin over `targets` channels (guild kinds), groups or
   * users: how a busy bot, or a resume replaying a backlog, is loaded. The ids are in posting order.
   */
  postBurst(input: Partial<BurstInput> & Pick<BurstInput, 'kind' | 'count'>): { ids: string[] } {
    return this.postBurstUnchecked(input);
  }

  postBurstUnchecked(raw: unknown): { ids: string[] } {
    const { kind, count, targets, content, appId } = parseBurst(raw);
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const slot = i % targets;
      const where = kind === 'group_at' ? { group_openid: `BURST_G${slot}` }
        : kind === 'c2c' ? { user: { id: `BURST_U${slot}` } }
        : kind === 'direct' ? {}
        : { guild_id: String(BURST_GUILD_BASE + slot) };
      ids.push(this.postMessageUnchecked({ kind, content: `${content} ${i}`, ...where, ...(appId ? { appId } : {}) }).id);
    }
    return { ids };
  }

  dispatchEvent(appId: string | undefined, t: string, d: unknown): { event_id: string } {
    return this.dispatchUnchecked(appId === undefined ? { t, d } : { appId, t, d });
  }

  dispatchUnchecked(raw: unknown): { event_id: string } {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ControlInputError('body', 'expected a JSON object');
    const { t, d, appId } = raw as { t?: unknown; d?: unknown; appId?: unknown };
    if (typeof t !== 'string' || !/^[A-Z][A-Z0-9_]*$/.test(t)) throw new ControlInputError('t', 't must be an event type name such as GUILD_MEMBER_ADD');
    if (t === 'READY' || t === 'RESUMED') throw new ControlInputError('t', `${t} is sent by the gateway itself`);
    if (d === undefined) throw new ControlInputError('d', 'd is required');
    if (appId !== undefined && (typeof appId !== 'string' || !this.#bots.has(appId))) throw new ControlInputError('appId', 'appId must name a bot the simulator knows');
    return this.#dispatch(appId as string | undefined, t, d, true);
  }

  outbox(since?: number): OutboxEntry[] {
    return this.#outbox.since(since);
  }

  sessions(): SessionInfo[] {
    return this.#gateway.sessions();
  }

  sessionLog(): SessionLogEntry[] {
    return this.#gateway.sessionLog();
  }

  fault(input: FaultInput): void {
    this.faultUnchecked(input);
  }

  faultUnchecked(raw: unknown): { affected: number } {
    const fault = parseFault(raw, (route) => this.#openapi.routes.has(route));
    if (fault.appId !== undefined && !this.#bots.has(fault.appId)) throw new ControlInputError('appId', 'appId must name a bot the simulator knows');
    if (fault.kind === 'rate_limit') {
      this.#openapi.rateLimit(fault.route, fault.count, fault.retryAfterSec, fault.appId);
      return { affected: fault.count };
    }
    return { affected: this.#gateway.fault(fault) };
  }

  registerWebhook(appId: unknown, url: unknown): Promise<WebhookRegistration> {
    return this.#webhooks.register(appId, url);
  }

  unregisterWebhook(appId: string): boolean {
    return this.#webhooks.unregister(appId);
  }

  webhooks(): WebhookRegistration[] {
    return this.#webhooks.registrations();
  }

  webhookLog(since?: number): WebhookLogEntry[] {
    return this.#webhooks.log(since);
  }

  world(): World {
    return this.#world;
  }

  botUsers(): User[] {
    return [...this.#botUsers.values()];
  }

  info(): Record<string, unknown> {
    return {
      url: this.url,
      gatewayUrl: this.gatewayUrl,
      tokenUrl: `${this.url}/app/getAppAccessToken`,
      bots: [...this.#bots.values()].map((b) => ({ appId: b.appId, user: this.#botUser(b.appId), legacyToken: b.token !== undefined })),
      recommendedShards: this.#options.recommendedShards,
      heartbeatIntervalMs: this.#options.heartbeatIntervalMs,
      proactive: this.#options.proactive,
      proactiveCounts: this.#proactive.counts(),
      apiInFlight: { ...this.#apiInFlight },
      refusedForChannelRate: this.#openapi.refusedForRate,
    };
  }

  exportState(): SimulatorState {
    return {
      version: 1,
      tokens: this.#tokens.snapshot(),
      gateway: this.#gateway.snapshot(),
      ledger: this.#ledger.snapshot(),
      outbox: this.#outbox.snapshot(),
      webhooks: this.#webhooks.registrations(),
      world: this.#world.export(),
      proactive: this.#proactive.snapshot(),
      nextEventId: this.#nextEventId,
    };
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#gateway.close();
      for (const res of this.#streams) res.end();
      this.#streams.clear();
      await this.#webhooks.close();
      this.#wss.close();
      await new Promise<void>((resolve) => {
        this.#server.close(() => resolve());
        this.#server.closeAllConnections();
      });
      this.removeAllListeners();
    })();
    return this.#closed;
  }

  #dispatch(appId: string | undefined, t: string, d: unknown, recordEvent: boolean): { event_id: string } {
    const eventId = `${t}:sim-${String(this.#nextEventId++).padStart(10, '0')}`;
    if (recordEvent && appId !== undefined) this.#recordEventReply(appId, t, d, eventId);
    else if (recordEvent) for (const a of this.#bots.keys()) this.#recordEventReply(a, t, d, eventId);
    const sessions = this.#gateway.dispatch(appId, t, d, eventId);
    const webhooks = this.#webhooks.deliver(appId, t, d, eventId);
    this.#publish('event', { appId: appId ?? null, t, d, id: eventId, sessions, webhooks });
    return { event_id: eventId };
  }

  /** Events that accept `event_id` replies (§14) open a passive window like a message does. */
  #recordEventReply(appId: string, t: string, d: unknown, eventId: string): void {
    const o = (typeof d === 'object' && d !== null ? d : {}) as Record<string, unknown>;
    let scene: ReplyScene | undefined;
    let target = '';
    if (['GROUP_ADD_ROBOT', 'GROUP_MSG_RECEIVE'].includes(t)) {
      scene = 'group';
      target = typeof o.group_openid === 'string' ? o.group_openid : '';
    } else if (['C2C_MSG_RECEIVE', 'FRIEND_ADD'].includes(t)) {
      scene = 'c2c';
      target = typeof o.openid === 'string' ? o.openid : '';
    } else if (t === 'INTERACTION_CREATE') {
      scene = o.scene === 'group' || o.chat_type === 1 ? 'group' : o.scene === 'c2c' || o.chat_type === 2 ? 'c2c' : 'guild';
    } else if (/^(GUILD_MEMBER_|MESSAGE_REACTION_|FORUM_)/.test(t)) {
      scene = 'guild';
    }
    if (scene) this.#ledger.recordInbound({ id: eventId, appId, scene, target, at: epochNow(), kind: 'event' });
    // a message event posted raw is as answerable as one from /_simulator/messages
    const messageScene: Record<string, ReplyScene> = { AT_MESSAGE_CREATE: 'guild', MESSAGE_CREATE: 'guild', DIRECT_MESSAGE_CREATE: 'direct', GROUP_AT_MESSAGE_CREATE: 'group', C2C_MESSAGE_CREATE: 'c2c' };
    const ms = messageScene[t];
    if (ms && typeof o.id === 'string') {
      const author = (o.author ?? {}) as Record<string, unknown>;
      const tgt = ms === 'guild' ? o.channel_id : ms === 'direct' ? o.guild_id : ms === 'group' ? o.group_openid ?? o.group_id : author.user_openid ?? author.id;
      if (typeof tgt === 'string') {
        this.#ledger.recordInbound({ id: o.id, appId, scene: ms, target: tgt, at: epochNow(), kind: 'message' });
        if (ms === 'group') this.#world.addGroup(tgt);
        if (ms === 'c2c') this.#world.c2cUsers.add(tgt);
      }
    }
  }

  #publish<K extends SimulatorEventName>(event: K, ...args: SimulatorEvents[K]): void {
    if (this.#streams.size > 0) {
      const chunk = `event: ${event}\ndata: ${JSON.stringify(args[0])}\n\n`;
      for (const res of this.#streams) {
        res.write(chunk);
        if (res.writableLength > MAX_STREAM_BACKLOG_BYTES) {
          this.#streams.delete(res);
          res.destroy();
        }
      }
    }
    try {
      (this as EventEmitter).emit(event, ...args); // K is generic here; the signature above checks the pair
    } catch (err) {
      this.#logger.error({ err, event }, 'simulator listener threw');
    }
  }

  #botFor(appId: string | undefined): SimulatorBot {
    if (appId === undefined) return this.#options.bots[0]!;
    const bot = this.#bots.get(appId);
    if (!bot) throw new ControlInputError('appId', 'appId must name a bot the simulator knows');
    return bot;
  }

  #botUser(appId: string): User {
    return this.#botUsers.get(appId)!;
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = requestUrl(req);
    if (!url) {
      req.resume();
      return sendJson(res, 400, { code: CODES.invalidParameter, message: 'malformed request target' });
    }
    if (url.pathname.startsWith('/_simulator')) return this.#onControl(req, res, url, method);
    const traceId = randomBytes(16).toString('hex');
    res.setHeader('X-Tps-trace-ID', traceId);
    this.#apiInFlight.now++;
    this.#apiInFlight.max = Math.max(this.#apiInFlight.max, this.#apiInFlight.now);
    try {
      const body = await readJson(req, res, method, (status, message) => new PlatformError(status, CODES.invalidParameter, message));
      if (url.pathname === '/app/getAppAccessToken') {
        if (method !== 'POST') throw new PlatformError(405, CODES.methodNotAllowed, 'use POST');
        const o = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
        return sendJson(res, 200, this.#tokens.issue(o.appId, o.clientSecret));
      }
      const auth = req.headers.authorization;
      const answer = this.#openapi.handle(method, url.pathname, url.searchParams, auth, body);
      if (this.#options.apiLatencyMs > 0) await sleep(this.#options.apiLatencyMs);
      for (const [k, v] of Object.entries(answer.headers ?? {})) res.setHeader(k, v);
      if (answer.status === 204 || answer.body === undefined) {
        res.writeHead(answer.status).end();
        return;
      }
      sendJson(res, answer.status, answer.body);
    } catch (err) {
      if (!(err instanceof PlatformError)) throw err;
      for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
      sendJson(res, err.status, err.body(traceId));
    } finally {
      this.#apiInFlight.now--;
    }
  }

  async #onControl(req: IncomingMessage, res: ServerResponse, url: URL, method: string): Promise<void> {
    const badHost = this.#controlAccess.hostRefusal(req);
    if (badHost) {
      req.resume();
      return sendJson(res, 403, { error: badHost, field: 'host' });
    }
    if (url.pathname === '/_simulator/stream' && method === 'GET') return this.#openStream(req, res);
    const { found, pathKnown } = this.#control.match(method, url.pathname.replace(/\/+$/, '') || '/');
    if (!found) return sendJson(res, pathKnown ? 405 : 404, { error: pathKnown ? `method ${method} not allowed` : `no control endpoint ${url.pathname}` });
    const badType = this.#controlAccess.contentTypeRefusal(req);
    if (badType) {
      req.resume();
      return sendJson(res, 415, { error: badType, field: 'content-type' });
    }
    try {
      const body = await readJson(req, res, method, (_status, message) => new ControlInputError('body', message));
      sendJson(res, 200, await found.handler({ params: found.params, query: url.searchParams, body }));
    } catch (err) {
      if (err instanceof ControlInputError) return sendJson(res, 400, { error: err.message, field: err.field });
      throw err;
    }
  }

  #openStream(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.write(`event: hello\ndata: ${JSON.stringify({ sessions: this.sessions(), outboxNext: (this.#outbox.since().at(-1)?.n ?? 0) + 1 })}\n\n`);
    this.#streams.add(res);
    req.on('close', () => this.#streams.delete(res));
  }
}

/**
 * Starts a local QQ bot platform: token endpoint, OpenAPI, websocket gateway, webhook delivery
 * and the `/_simulator/` control API, all on one port.
 */
export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const resolved = resolveOptions(options);
  const logger = options.logger ?? silentLogger;
  if (options.state !== undefined && options.state.version !== 1) throw new ControlInputError('state', 'unsupported simulator state version');
  const sim = new SimulatorImpl(resolved, logger, options.state);
  try {
    await sim.listen();
  } catch (err) {
    await sim.close();
    throw err;
  }
  logger.info({ url: sim.url, gatewayUrl: sim.gatewayUrl }, 'simulator listening');
  for (const bot of resolved.bots) {
    // simulator credentials, printed on purpose so a developer can point a bot at it
    const creds = resolved.printCredentials ? ` appId=${bot.appId} secret=${bot.secret}${bot.token ? ` token=${bot.token}` : ''}` : ` appId=${bot.appId}`;
    logger.info(`simulator bot${creds}`);
  }
  return sim;
}

async function readJson(req: IncomingMessage, res: ServerResponse, method: string, refuse: BodyRefusal): Promise<unknown> {
  if (method === 'GET' || method === 'HEAD') {
    req.resume();
    return undefined;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) {
      // the rest is not read: the connection closes after the answer rather than carry on mid-upload
      res.setHeader('connection', 'close');
      throw refuse(413, `request body larger than ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  const type = req.headers['content-type'] ?? '';
  if (type.startsWith('multipart/')) throw refuse(400, 'multipart/form-data is not supported by the simulator');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw refuse(400, 'body must be valid JSON');
  }
  if (jsonDepth(parsed, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw refuse(400, `body nests deeper than ${MAX_JSON_DEPTH} levels`);
  return parsed;
}

/** Depth of a parsed JSON value, iteratively (the value may be deeper than the stack); stops counting past `limit`. */
function jsonDepth(value: unknown, limit: number): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > max) max = depth;
    if (max > limit) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return max;
}

/** The request target as a URL, or undefined when the URL parser refuses it (`GET http://[ HTTP/1.1`). */
function requestUrl(req: IncomingMessage): URL | undefined {
  try {
    return new URL(req.url ?? '/', 'http://simulator');
  } catch {
    return undefined;
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function hostForUrl(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

/** A stable numeric-looking user id for a bot (guild user ids are numeric strings). */
function botUserId(appId: string): string {
  let h = 1469598103934665603n;
  for (const ch of appId) h = ((h ^ BigInt(ch.codePointAt(0)!)) * 1099511628211n) & 0xffffffffffffn;
  return String(10_000_000_000_000_000n + h);
}
