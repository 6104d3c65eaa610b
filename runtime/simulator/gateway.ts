import { randomUUID } from 'node:crypto';
import type { RawData, WebSocket, WebSocketServer } from 'ws';
import type { Logger } from '../logging/logger.ts';
import type { GatewayFault } from './faults.ts';
import { intentOf, isShardZeroEvent, KNOWN_INTENT_BITS } from './intents.ts';
import type { ResolvedOptions } from './resolved-options.ts';
import type { SimulatorBot } from './simulator-bot.ts';
import { SessionLog, type SessionLogEntry } from './session-log.ts';
import { SessionStartLimit, type SessionStartLimitInfo, type StartBudget } from './start-limit.ts';
import type { TokenIssuer } from './token-issuer.ts';

export interface SessionInfo {
  sessionId: string;
  appId: string;
  shard: [number, number];
  intents: number;
  /** last `s` dispatched on this session */
  seq: number;
  /** epoch ms of the last heartbeat, null before the first */
  lastHeartbeatAt: number | null;
  connected: boolean;
  resumedCount: number;
}

export interface SessionSnapshot {
  id: string;
  appId: string;
  shard: [number, number];
  intents: number;
  seq: number;
  /** highest `s` pushed out of the replay buffer: a resume from before it cannot be served */
  droppedThrough: number;
  buffer: BufferedFrame[];
  resumedCount: number;
  lastHeartbeatAt: number | null;
}

export interface GatewaySnapshot {
  sessions: SessionSnapshot[];
  log: SessionLogEntry[];
  startLimits: Record<string, StartBudget>;
}

export type SessionChange = 'ready' | 'resumed' | 'disconnected' | 'invalidated' | 'expired';

interface BufferedFrame { s: number; frame: string }

interface Session extends SessionSnapshot {
  conn: Connection | undefined;
  /** epoch ms after which a disconnected session is gone */
  expiresAt: number | undefined;
}

interface Connection {
  ws: WebSocket;
  session: Session | undefined;
  acks: boolean;
  closing: boolean;
  timer: NodeJS.Timeout | undefined;
  killTimer: NodeJS.Timeout | undefined;
}

/** Codes after which the platform lets a client resume (§6.7); any other 4xxx ends the session. */
function closeKeepsSession(code: number): boolean {
  return code < 4000 || code === 4008 || code === 4009;
}

/** Frames are decoded here rather than by ws, so that invalid UTF-8 closes with 4002 like any bad payload. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

const OP = { dispatch: 0, heartbeat: 1, identify: 2, resume: 6, reconnect: 7, invalidSession: 9, hello: 10, heartbeatAck: 11 } as const;

export interface GatewayHooks {
  session(change: SessionChange, info: SessionInfo): void;
  identify(entry: SessionLogEntry): void;
}

/**
 * The websocket gateway: connections come and go, sessions outlive them. Every dispatch is
 * numbered per session and kept in the session's replay buffer, whether or not a connection is
 * attached, until the session expires; that is what resume replays.
 */
export class Gateway {
  readonly #options: ResolvedOptions;
  readonly #tokens: TokenIssuer;
  readonly #botUser: (appId: string) => { id: string; username: string };
  readonly #logger: Logger;
  readonly #hooks: GatewayHooks;
  readonly #sessions = new Map<string, Session>();
  readonly #conns = new Set<Connection>();
  readonly #identifies = new Map<string, number[]>();
  readonly #startLimit: SessionStartLimit;
  readonly #log: SessionLog;
  readonly #sweeper: NodeJS.Timeout;

  constructor(init: {
    options: ResolvedOptions;
    tokens: TokenIssuer;
    botUser: (appId: string) => { id: string; username: string };
    logger: Logger;
    hooks: GatewayHooks;
    restored?: GatewaySnapshot | undefined;
  }) {
    this.#options = init.options;
    this.#tokens = init.tokens;
    this.#botUser = init.botUser;
    this.#logger = init.logger;
    this.#hooks = init.hooks;
    this.#log = new SessionLog(init.restored?.log);
    const now = Date.now();
    const known = new Set(init.options.bots.map((b) => b.appId));
    for (const s of init.restored?.sessions ?? []) {
      if (!known.has(s.appId)) continue;
      this.#sessions.set(s.id, { ...s, buffer: s.buffer.slice(), conn: undefined, expiresAt: now + init.options.resumeWindowMs });
    }
    this.#startLimit = new SessionStartLimit(init.options.sessionStartLimit, [...known], init.restored?.startLimits);
    this.#sweeper = setInterval(() => this.#sweep(Date.now()), Math.min(init.options.resumeWindowMs, 5000));
    this.#sweeper.unref();
  }

  attach(wss: WebSocketServer): void {
    wss.on('connection', (ws) => this.#accept(ws));
  }

  startLimit(appId: string): SessionStartLimitInfo {
    return this.#startLimit.info(appId);
  }

  /**
   * Delivers one event to every session of `appId` (all bots when undefined) whose shard owns it
   * and whose intents include it. Returns the number of sessions it was numbered into.
   */
  dispatch(appId: string | undefined, t: string, d: unknown, id: string): number {
    this.#sweep(Date.now());
    const bit = intentOf(t);
    // serialised once, before any session is numbered: a payload that cannot be sent must not leave a gap in `s`
    const tail = `,"t":${JSON.stringify(t)},"id":${JSON.stringify(id)},"d":${JSON.stringify(d) ?? 'null'}}`;
    let reached = 0;
    for (const session of this.#sessions.values()) {
      if (appId !== undefined && session.appId !== appId) continue;
      if (bit !== undefined && (session.intents & bit) === 0) continue;
      if (shardFor(t, d, session.shard[1]) !== session.shard[0]) continue;
      const s = ++session.seq;
      const frame = `{"op":${OP.dispatch},"s":${s}${tail}`;
      session.buffer.push({ s, frame });
      if (session.buffer.length > this.#options.replayBufferSize) session.droppedThrough = session.buffer.shift()!.s;
      if (session.conn && !session.conn.closing) session.conn.ws.send(frame);
      reached++;
    }
    return reached;
  }

  /** Applies a gateway fault; returns how many connections it touched. */
  fault(f: GatewayFault): number {
    let touched = 0;
    for (const conn of [...this.#conns]) {
      if (conn.closing) continue;
      const session = conn.session;
      if (f.appId !== undefined && session?.appId !== f.appId) continue;
      if (f.shard !== undefined && session?.shard[0] !== f.shard) continue;
      touched++;
      switch (f.kind) {
        case 'close':
          if (session && !closeKeepsSession(f.code)) this.#endSession(session, 'invalidated');
          this.#close(conn, f.code, 'fault injected');
          break;
        case 'reconnect':
          conn.ws.send(JSON.stringify({ op: OP.reconnect }));
          break;
        case 'invalid_session':
          conn.ws.send(JSON.stringify({ op: OP.invalidSession, d: f.resumable }));
          if (session) {
            if (f.resumable) this.#detach(conn);
            else this.#endSession(session, 'invalidated');
          }
          break;
        case 'stop_acks':
          conn.acks = false;
          break;
        case 'drop':
          conn.ws.terminate();
          break;
      }
    }
    return touched;
  }

  sessions(): SessionInfo[] {
    this.#sweep(Date.now());
    return [...this.#sessions.values()].map(info);
  }

  sessionLog(): SessionLogEntry[] {
    return this.#log.entries();
  }

  snapshot(): GatewaySnapshot {
    this.#sweep(Date.now());
    return {
      sessions: [...this.#sessions.values()].map((s) => ({
        id: s.id, appId: s.appId, shard: [s.shard[0], s.shard[1]], intents: s.intents, seq: s.seq,
        droppedThrough: s.droppedThrough, buffer: s.buffer.slice(), resumedCount: s.resumedCount, lastHeartbeatAt: s.lastHeartbeatAt,
      })),
      log: this.#log.entries(),
      startLimits: this.#startLimit.snapshot(),
    };
  }

  /** Drops every connection abruptly (what a platform restart looks like to a client). */
  close(): void {
    clearInterval(this.#sweeper);
    for (const conn of this.#conns) {
      clearTimeout(conn.timer);
      clearTimeout(conn.killTimer);
      conn.ws.terminate();
    }
    this.#conns.clear();
  }

  #accept(ws: WebSocket): void {
    const conn: Connection = { ws, session: undefined, acks: true, closing: false, timer: undefined, killTimer: undefined };
    this.#conns.add(conn);
    ws.on('message', (data, isBinary) => {
      try {
        this.#onFrame(conn, data, isBinary);
      } catch (err) {
        // a bug here must cost one connection, never the simulator
        this.#logger.error({ err }, 'simulator gateway failed on a frame');
        this.#close(conn, 4000, 'internal error');
      }
    });
    ws.on('close', () => this.#onClose(conn));
    ws.on('error', (err) => this.#logger.debug({ err }, 'simulator gateway socket error'));
    ws.send(JSON.stringify({ op: OP.hello, d: { heartbeat_interval: this.#options.heartbeatIntervalMs } }));
    this.#armTimeout(conn);
  }

  #onFrame(conn: Connection, data: RawData, _isBinary: boolean): void {
    if (conn.closing) return;
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (bytes.length > this.#options.maxFrameBytes) return this.#close(conn, 4002, 'payload too large');
    let payload: unknown;
    try {
      payload = JSON.parse(UTF8.decode(bytes));
    } catch {
      return this.#close(conn, 4002, 'invalid payload');
    }
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return this.#close(conn, 4002, 'invalid payload');
    const { op, d } = payload as { op?: unknown; d?: unknown };
    if (typeof op !== 'number' || !Number.isInteger(op)) return this.#close(conn, 4002, 'invalid payload: op');
    switch (op) {
      case OP.heartbeat:
        if (conn.session) conn.session.lastHeartbeatAt = Date.now();
        this.#armTimeout(conn);
        if (conn.acks) conn.ws.send(JSON.stringify({ op: OP.heartbeatAck }));
        return;
      case OP.identify:
        return this.#identify(conn, d);
      case OP.resume:
        return this.#resume(conn, d);
      default:
        return this.#close(conn, 4001, 'invalid opcode');
    }
  }

  #identify(conn: Connection, d: unknown): void {
    const reject = (closeCode: number, reason: string, extra: Partial<SessionLogEntry> = {}): void => {
      this.#logEntry({ kind: 'identify', outcome: 'rejected', closeCode, reason, ...extra });
      this.#close(conn, closeCode, reason);
    };
    if (conn.session) return reject(4005, 'already authenticated');
    if (typeof d !== 'object' || d === null) return reject(4002, 'invalid payload: d');
    const { token, intents, shard } = d as { token?: unknown; intents?: unknown; shard?: unknown };
    let bot: SimulatorBot;
    try {
      bot = this.#tokens.authenticate(token, { bare: true });
    } catch {
      return reject(4004, 'authentication failed');
    }
    const extra: Partial<SessionLogEntry> = { appId: bot.appId };
    // range first: bitwise operators see only the low 32 bits, so 2 ** 32 + x would pass as x
    if (typeof intents !== 'number' || !Number.isInteger(intents) || intents < 0 || intents > 0x7fffffff || (intents & ~KNOWN_INTENT_BITS) !== 0) {
      return reject(4013, 'invalid intents', extra);
    }
    extra.intents = intents;
    const pair = shard === undefined ? [0, 1] : shard;
    if (!Array.isArray(pair) || pair.length !== 2 || !pair.every((x) => typeof x === 'number' && Number.isInteger(x)) || pair[1] < 1 || pair[0] < 0 || pair[0] >= pair[1]) {
      return reject(4010, 'invalid shard', extra);
    }
    const shardPair: [number, number] = [pair[0], pair[1]];
    extra.shard = shardPair;
    if (((bot.deniedIntents ?? 0) & intents) !== 0) return reject(4014, 'intents not permitted', extra);
    const now = performance.now();
    const recent = (this.#identifies.get(bot.appId) ?? []).filter((at) => now - at < this.#options.identifyWindowMs);
    if (recent.length >= this.#options.sessionStartLimit.maxConcurrency) {
      this.#identifies.set(bot.appId, recent);
      return reject(4008, 'identify too fast: max_concurrency per window exceeded', extra);
    }
    if (!this.#startLimit.take(bot.appId)) {
      // §3 documents the limit but no close code for it; 4008 is the documented "too fast" code, the one
      // max_concurrency uses too, and it lets a client identify again once reset_after has passed
      const { reset_after: resetAfter } = this.#startLimit.info(bot.appId);
      return reject(4008, `session_start_limit exhausted: resets in ${Math.ceil(resetAfter / 1000)} s`, extra);
    }
    recent.push(now);
    this.#identifies.set(bot.appId, recent);

    const session: Session = {
      id: randomUUID(), appId: bot.appId, shard: shardPair, intents, seq: 0, droppedThrough: 0, buffer: [],
      resumedCount: 0, lastHeartbeatAt: null, conn, expiresAt: undefined,
    };
    this.#sessions.set(session.id, session);
    conn.session = session;
    this.#armTimeout(conn);
    // READY is numbered but not replayable: a resume replays events, not the handshake
    const s = ++session.seq;
    const user = this.#botUser(bot.appId);
    conn.ws.send(JSON.stringify({ op: OP.dispatch, s, t: 'READY', d: { version: 1, session_id: session.id, user: { id: user.id, username: user.username, bot: true }, shard: shardPair } }));
    this.#logEntry({ kind: 'identify', outcome: 'ok', sessionId: session.id, ...extra });
    this.#hooks.session('ready', info(session));
  }

  #resume(conn: Connection, d: unknown): void {
    const reject = (closeCode: number, reason: string, extra: Partial<SessionLogEntry> = {}): void => {
      this.#logEntry({ kind: 'resume', outcome: 'rejected', closeCode, reason, ...extra });
      this.#close(conn, closeCode, reason);
    };
    if (conn.session) return reject(4005, 'already authenticated');
    if (typeof d !== 'object' || d === null) return reject(4002, 'invalid payload: d');
    const { token, session_id: sessionId, seq } = d as { token?: unknown; session_id?: unknown; seq?: unknown };
    let bot: SimulatorBot;
    try {
      bot = this.#tokens.authenticate(token, { bare: true });
    } catch {
      return reject(4004, 'authentication failed');
    }
    this.#sweep(Date.now());
    const session = typeof sessionId === 'string' ? this.#sessions.get(sessionId) : undefined;
    if (!session || session.appId !== bot.appId) return reject(4006, 'session id invalid, cannot resume', { appId: bot.appId });
    const extra: Partial<SessionLogEntry> = { appId: bot.appId, shard: session.shard, intents: session.intents, sessionId: session.id };
    if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0 || seq > session.seq || seq < session.droppedThrough) {
      return reject(4007, 'invalid seq', extra);
    }
    if (session.conn) {
      // the client gave up on a connection we still hold (zombie): the new one wins
      const old = session.conn;
      this.#detach(old);
      this.#close(old, 4009, 'session resumed elsewhere');
    }
    session.conn = conn;
    session.expiresAt = undefined;
    session.resumedCount++;
    conn.session = session;
    this.#armTimeout(conn);
    for (const entry of session.buffer) if (entry.s > seq) conn.ws.send(entry.frame);
    conn.ws.send(JSON.stringify({ op: OP.dispatch, t: 'RESUMED', d: '' }));
    this.#logEntry({ kind: 'resume', outcome: 'ok', ...extra });
    this.#hooks.session('resumed', info(session));
  }

  #logEntry(entry: Omit<SessionLogEntry, 'n' | 'at' | 'time'>): void {
    this.#hooks.identify(this.#log.add(entry));
  }

  #armTimeout(conn: Connection): void {
    clearTimeout(conn.timer);
    conn.timer = setTimeout(() => this.#close(conn, 4009, 'session timed out: no heartbeat'), this.#options.sessionTimeoutMs);
  }

  #close(conn: Connection, code: number, reason: string): void {
    if (conn.closing) return;
    conn.closing = true;
    clearTimeout(conn.timer);
    if (conn.session && !closeKeepsSession(code)) this.#endSession(conn.session, 'invalidated');
    conn.ws.close(code, reason);
    // a client that never answers the close frame must not pin the socket
    conn.killTimer = setTimeout(() => conn.ws.terminate(), 2000);
    conn.killTimer.unref();
  }

  #detach(conn: Connection): void {
    const session = conn.session;
    conn.session = undefined;
    if (!session || session.conn !== conn) return;
    session.conn = undefined;
    session.expiresAt = Date.now() + this.#options.resumeWindowMs;
    this.#hooks.session('disconnected', info(session));
  }

  #endSession(session: Session, change: SessionChange): void {
    if (!this.#sessions.delete(session.id)) return;
    if (session.conn) session.conn.session = undefined;
    session.conn = undefined;
    this.#hooks.session(change, info(session));
  }

  #onClose(conn: Connection): void {
    this.#conns.delete(conn);
    clearTimeout(conn.timer);
    clearTimeout(conn.killTimer);
    conn.closing = true;
    this.#detach(conn);
  }

  #sweep(now: number): void {
    for (const session of this.#sessions.values()) {
      if (!session.conn && session.expiresAt !== undefined && session.expiresAt <= now) this.#endSession(session, 'expired');
    }
  }
}

/** `(guild_id >> 22) % shard_count` for guild events; group, C2C and DM events ride shard 0 (§7). */
export function shardFor(t: string, d: unknown, shardCount: number): number {
  if (shardCount <= 1 || isShardZeroEvent(t)) return 0;
  const guildId = typeof d === 'object' && d !== null ? (d as { guild_id?: unknown }).guild_id : undefined;
  if (typeof guildId !== 'string' || !/^[0-9]{1,20}$/.test(guildId)) return 0;
  return Number((BigInt(guildId) >> 22n) % BigInt(shardCount));
}

function info(s: Session): SessionInfo {
  return {
    sessionId: s.id, appId: s.appId, shard: [s.shard[0], s.shard[1]], intents: s.intents, seq: s.seq,
    lastHeartbeatAt: s.lastHeartbeatAt, connected: s.conn !== undefined, resumedCount: s.resumedCount,
  };
}
