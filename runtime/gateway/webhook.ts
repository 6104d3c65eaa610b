import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Secret } from '../config/secret.ts';
import type { Logger } from '../logging/logger.ts';
import { silentLogger } from '../logging/logger.ts';
import { toDispatch, type GatewayDispatch, type GatewayEnvelope } from './dispatch-event.ts';
import { TypedEmitter } from './event-source.ts';
import { deriveKeys, validationReply, verifyMessage, webhookMessage, type WebhookKeys } from './signature.ts';

export interface WebhookTransportOptions {
  port: number;
  /** default 0.0.0.0 */
  host?: string;
  /** callback path, e.g. `/qqbot/callback` */
  path: string;
  appId: string;
  /** the bot secret: the Ed25519 key is derived from it (qq-protocol.md §11.2) */
  secret: Secret;
  /** accept timestamps at most this far from our clock; default 300 s */
  maxSkewSec?: number;
  /** largest body accepted; default 1 MiB */
  maxBodyBytes?: number;
  logger?: Logger;
}

export interface WebhookEvents {
  [event: string]: unknown[];
  dispatch: [dispatch: GatewayDispatch];
  /** a request refused with 401/4xx, for metrics and the console */
  rejected: [info: { reason: string; status: number }];
  error: [error: Error];
}

/**
 * HTTP callback ingress. Every request's signature is checked over the exact bytes received; stale
 * timestamps and replayed requests are refused with 401; dispatches are acknowledged (op 12) before
 * they are processed, and reach the same `GatewayDispatch` path as websocket frames.
 */
export class WebhookTransport extends TypedEmitter<WebhookEvents> {
  readonly #options: WebhookTransportOptions;
  readonly #keys: WebhookKeys;
  readonly #log: Logger;
  readonly #maxSkewSec: number;
  // signature digest → expiry (ms); a replay inside the skew window is caught here, outside it by the timestamp check
  readonly #recent = new Map<string, number>();
  #server: Server | undefined;

  constructor(options: WebhookTransportOptions) {
    super();
    this.#options = options;
    this.#keys = deriveKeys(options.secret);
    this.#maxSkewSec = options.maxSkewSec ?? 300;
    this.#log = (options.logger ?? silentLogger).child({ component: 'webhook', appId: options.appId });
  }

  async start(): Promise<{ port: number }> {
    if (this.#server) throw new Error('webhook transport already started');
    const server = createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        this.#log.error({ err: error }, 'webhook handler failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#options.port, this.#options.host ?? '0.0.0.0', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    this.#log.info({ port, path: this.#options.path }, 'webhook listening');
    return { port };
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== this.#options.path) return this.#reject(res, 404, 'unknown path');
    if (req.method !== 'POST') return this.#reject(res, 405, 'method not allowed');

    const body = await readBody(req, this.#options.maxBodyBytes ?? 1024 * 1024);
    if (!body) return this.#reject(res, 413, 'body too large');

    const appId = header(req, 'x-bot-appid');
    if (appId !== undefined && appId !== this.#options.appId) return this.#reject(res, 401, 'X-Bot-Appid is not this bot');
    const signature = header(req, 'x-signature-ed25519');
    const timestamp = header(req, 'x-signature-timestamp');
    if (!signature || !timestamp) return this.#reject(res, 401, 'missing signature headers');
    if (!/^\d{1,12}$/.test(timestamp)) return this.#reject(res, 401, 'malformed timestamp');
    const skew = Math.abs(Date.now() / 1000 - Number(timestamp));
    if (skew > this.#maxSkewSec) return this.#reject(res, 401, `stale timestamp (${Math.round(skew)} s off, window ${this.#maxSkewSec} s)`);
    if (!verifyMessage(this.#keys, webhookMessage(timestamp, body), signature)) return this.#reject(res, 401, 'bad signature');

    const now = Date.now();
    for (const [key, expires] of this.#recent) {
      if (expires > now) break;
      this.#recent.delete(key);
    }
    // the platform never signs twice with the same timestamp and body; a repeat is a replay
    const digest = createHash('sha256').update(signature.toLowerCase()).digest('base64');
    if (this.#recent.has(digest)) return this.#reject(res, 401, 'replayed request');
    this.#recent.set(digest, now + this.#maxSkewSec * 2000);

    let envelope: GatewayEnvelope;
    try {
      envelope = JSON.parse(body.toString('utf8')) as GatewayEnvelope;
    } catch {
      return this.#reject(res, 400, 'body is not JSON');
    }

    if (envelope.op === 13) {
      const d = envelope.d as { plain_token?: unknown; event_ts?: unknown } | null;
      if (!d || typeof d.plain_token !== 'string' || typeof d.event_ts !== 'string') return this.#reject(res, 400, 'op 13 without plain_token/event_ts');
      this.#log.info('answering callback URL validation (op 13)');
      return json(res, 200, validationReply(this.#keys, d.plain_token, d.event_ts));
    }
    if (envelope.op === 0 && typeof envelope.t === 'string') {
      const dispatch = toDispatch(envelope, 'webhook');
      // acknowledge first: the platform may time out and retry while a handler runs
      json(res, 200, { op: 12, d: 0 });
      setImmediate(() => {
        try {
          this.emit('dispatch', dispatch);
        } catch (error) {
          this.#log.error({ err: error, t: dispatch.t }, 'dispatch listener threw');
          this.emit('error', error as Error);
        }
      });
      return;
    }
    return this.#reject(res, 400, `unsupported op ${String(envelope.op)}`);
  }

  #reject(res: ServerResponse, status: number, reason: string): void {
    this.#log.warn({ status, reason }, 'webhook request rejected');
    this.emit('rejected', { reason, status });
    json(res, status, { error: reason });
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

/** The raw bytes, or undefined when over `limit` (the rest is drained, not buffered). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      if (!over) chunks.push(chunk);
    });
    req.on('end', () => resolve(over ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
