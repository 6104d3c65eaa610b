import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Secret } from '../config/secret.ts';
import type { Logger } from '../logging/logger.ts';
import { silentLogger } from '../logging/logger.ts';
import { toDispatch, type GatewayDispatch, type GatewayEnvelope } from './dispatch-event.ts';
import { RejectionTally } from './rejection-tally.ts';
import { deriveKeys, isSignatureShaped, validationReply, verifyMessage, webhookMessage, type WebhookKeys } from './signature.ts';
import { reportError } from '../errors/report-error.ts';

export interface WebhookTransportOptions {
  port: number;
  /** default 127.0.0.1: the platform reaches it through a TLS reverse proxy (README) */
  host?: string;
  /** callback path, e.g. `/qqbot/callback` */
  path: string;
  appId: string;
  /** the bot secret: the Ed25519 key is derived from it (docs/protocol.md §11.2) */
  secret: Secret;
  /** accept timestamps at most this far from our clock; default 300 s */
  maxSkewSec?: number;
  /** largest body accepted; default 1 MiB */
  maxBodyBytes?: number;
  /**
   * Bodies being read at once. Until its signature is checked a body is a stranger's, so this bounds
   * the memory strangers can hold (with `maxBodyBytes`); more requests are answered 503. Default 32
   */
  maxPendingBodies?: number;
  /** a body that has not fully arrived by then is abandoned with 408; default 10 s */
  bodyTimeoutMs?: number;
  /** refused requests are logged as one line of counts per interval; default 60 s */
  rejectionLogIntervalMs?: number;
  logger?: Logger;
}

/** Why a request was refused: the `reason` label of `qqbot_webhook_rejected_total`. */
export type WebhookRejection =
  | 'path'
  | 'method'
  | 'app_id'
  | 'headers'
  | 'timestamp'
  | 'signature'
  | 'too_large'
  | 'busy'
  | 'body_timeout'
  | 'aborted'
  | 'replay'
  | 'not_json'
  | 'bad_envelope'
  | 'starting';

export interface WebhookEvents {
  dispatch: [dispatch: GatewayDispatch];
  /** a request refused with 4xx/503, for metrics and the console */
  rejected: [info: { kind: WebhookRejection; reason: string; status: number }];
  error: [error: Error];
}

/** A request answered with an error status; thrown inside the handler, answered in one place. */
class Refusal {
  readonly status: number;
  readonly kind: WebhookRejection;
  readonly reason: string;

  constructor(status: number, kind: WebhookRejection, reason: string) {
    this.status = status;
    this.kind = kind;
    this.reason = reason;
  }
}

/**
 * HTTP callback ingress. What a request costs a stranger is checked first: path, method, app id,
 * signature headers and timestamp window before any body byte is read; then a bounded number of
 * bodies are read at once, each within a size and time limit. The signature is checked over the
 * exact bytes received; replays inside the window are refused; dispatches are acknowledged
 * (op 12) before they are processed, and reach the same `GatewayDispatch` path as websocket
 * frames. Until `open()`, dispatches are answered 503 so the platform delivers them again later.
 */
export class WebhookTransport extends EventEmitter<WebhookEvents> {
  readonly #options: WebhookTransportOptions;
  readonly #keys: WebhookKeys;
  readonly #log: Logger;
  readonly #maxSkewSec: number;
  readonly #maxBodyBytes: number;
  readonly #maxPendingBodies: number;
  readonly #bodyTimeoutMs: number;
  readonly #tally: RejectionTally<WebhookRejection>;
  // signature digest → expiry (ms); a replay inside the skew window is caught here, outside it by the timestamp check
  readonly #recent = new Map<string, number>();
  #server: Server | undefined;
  #pendingBodies = 0;
  #open = false;

  constructor(options: WebhookTransportOptions) {
    super();
    this.#options = options;
    this.#keys = deriveKeys(options.secret);
    this.#maxSkewSec = options.maxSkewSec ?? 300;
    this.#maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
    this.#maxPendingBodies = options.maxPendingBodies ?? 32;
    this.#bodyTimeoutMs = options.bodyTimeoutMs ?? 10_000;
    this.#log = (options.logger ?? silentLogger).child({ component: 'webhook', appId: options.appId });
    this.#tally = new RejectionTally(options.rejectionLogIntervalMs ?? 60_000, (counts, total) => {
      this.#log.warn({ rejected: counts, total }, 'webhook requests refused');
    });
  }

  /** Binds the port and starts answering (dispatches with 503 until `open()`). */
  async listen(): Promise<{ port: number }> {
    if (this.#server) throw new Error('webhook transport already started');
    const server = createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        if (error instanceof Refusal) return this.#reject(res, error);
        this.#log.error({ err: error }, 'webhook handler failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    server.on('clientError', (_error, socket) => socket.destroy());
    this.#server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.#options.port, this.#options.host ?? '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      this.#server = undefined;
      throw error;
    }
    const port = (server.address() as AddressInfo).port;
    this.#log.info({ port, path: this.#options.path }, 'webhook listening');
    return { port };
  }

  /** Dispatches are taken from now on. */
  open(): void {
    this.#open = true;
  }

  /** `listen()` and `open()`. */
  async start(): Promise<{ port: number }> {
    const bound = await this.listen();
    this.open();
    return bound;
  }

  async stop(): Promise<void> {
    this.#open = false;
    this.#tally.flush();
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (pathOf(req) !== this.#options.path) throw new Refusal(404, 'path', 'unknown path');
    if (req.method !== 'POST') throw new Refusal(405, 'method', 'method not allowed');
    const appId = header(req, 'x-bot-appid');
    if (appId !== undefined && appId !== this.#options.appId) throw new Refusal(401, 'app_id', 'X-Bot-Appid is not this bot');
    const signature = header(req, 'x-signature-ed25519');
    const timestamp = header(req, 'x-signature-timestamp');
    if (!signature || !timestamp) throw new Refusal(401, 'headers', 'missing signature headers');
    if (!isSignatureShaped(signature)) throw new Refusal(401, 'signature', 'bad signature');
    if (!/^\d{1,12}$/.test(timestamp)) throw new Refusal(401, 'timestamp', 'malformed timestamp');
    const skew = Math.abs(Date.now() / 1000 - Number(timestamp));
    if (skew > this.#maxSkewSec) throw new Refusal(401, 'timestamp', `stale timestamp (${Math.round(skew)} s off, window ${this.#maxSkewSec} s)`);

    const body = await this.#readBody(req);
    if (!verifyMessage(this.#keys, webhookMessage(timestamp, body), signature)) throw new Refusal(401, 'signature', 'bad signature');

    let envelope: unknown;
    try {
      envelope = JSON.parse(body.toString('utf8'));
    } catch {
      throw new Refusal(400, 'not_json', 'body is not JSON');
    }
    if (typeof envelope !== 'object' || envelope === null || Array.isArray(envelope)) throw new Refusal(400, 'bad_envelope', 'body is not a JSON object');
    const { op, t, d } = envelope as GatewayEnvelope;
    const dispatch = op === 0 && typeof t === 'string';
    if (dispatch && !this.#open) {
      res.setHeader('retry-after', '1');
      throw new Refusal(503, 'starting', 'the bot is starting; deliver again shortly');
    }

    const now = Date.now();
    for (const [key, expires] of this.#recent) {
      if (expires > now) break;
      this.#recent.delete(key);
    }
    // the platform never signs twice with the same timestamp and body; a repeat is a replay
    const digest = createHash('sha256').update(signature.toLowerCase()).digest('base64');
    if (this.#recent.has(digest)) throw new Refusal(401, 'replay', 'replayed request');
    this.#recent.set(digest, now + this.#maxSkewSec * 2000);

    if (op === 13) {
      const data = d as { plain_token?: unknown; event_ts?: unknown } | null;
      if (typeof data !== 'object' || data === null || typeof data.plain_token !== 'string' || typeof data.event_ts !== 'string') {
        throw new Refusal(400, 'bad_envelope', 'op 13 without plain_token/event_ts');
      }
      this.#log.info('answering callback URL validation (op 13)');
      return json(res, 200, validationReply(this.#keys, data.plain_token, data.event_ts));
    }
    if (dispatch) {
      const event = toDispatch(envelope as GatewayEnvelope, 'webhook');
      // acknowledge first: the platform may time out and retry while a handler runs
      json(res, 200, { op: 12, d: 0 });
      setImmediate(() => {
        try {
          this.emit('dispatch', event);
        } catch (error) {
          this.#log.error({ err: error, t: event.t }, 'dispatch listener threw');
          reportError(this, error as Error);
        }
      });
      return;
    }
    throw new Refusal(400, 'bad_envelope', `unsupported op ${String(op).slice(0, 20)}`);
  }

  /** The raw bytes, read only while few enough strangers' bodies are in flight, within size and time. */
  async #readBody(req: IncomingMessage): Promise<Buffer> {
    const declared = Number(header(req, 'content-length') ?? 0);
    if (declared > this.#maxBodyBytes) throw new Refusal(413, 'too_large', 'body too large');
    if (this.#pendingBodies >= this.#maxPendingBodies) throw new Refusal(503, 'busy', 'too many requests in flight');
    this.#pendingBodies += 1;
    try {
      return await readBody(req, this.#maxBodyBytes, this.#bodyTimeoutMs);
    } finally {
      this.#pendingBodies -= 1;
    }
  }

  #reject(res: ServerResponse, refusal: Refusal): void {
    this.#tally.add(refusal.kind);
    this.emit('rejected', { kind: refusal.kind, reason: refusal.reason, status: refusal.status });
    if (res.headersSent || res.destroyed) return;
    // the body may still be arriving (or never will): do not keep the connection for it
    if (!res.req.complete) res.setHeader('connection', 'close');
    json(res, refusal.status, { error: refusal.reason });
  }
}

/** The request target's path; undefined when the URL parser refuses it (`POST http://[ HTTP/1.1`). */
function pathOf(req: IncomingMessage): string | undefined {
  try {
    return new URL(req.url ?? '/', 'http://localhost').pathname;
  } catch {
    return undefined;
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The raw bytes; refuses (413/408) a body over `limit` or not complete within `timeoutMs`. */
function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (refusal?: Refusal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.off('data', onData);
      if (!refusal) return resolve(Buffer.concat(chunks));
      // what is still on its way is not wanted: stop reading it (the answer closes the connection)
      req.pause();
      reject(refusal);
    };
    const timer = setTimeout(() => finish(new Refusal(408, 'body_timeout', 'body not received in time')), timeoutMs);
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return finish(new Refusal(413, 'too_large', 'body too large'));
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => finish());
    // 'close' before 'end': the client went away mid-body
    req.once('close', () => finish(new Refusal(400, 'aborted', 'the connection closed before the body was complete')));
    req.once('error', () => finish(new Refusal(400, 'aborted', 'the connection failed before the body was complete')));
  });
}
