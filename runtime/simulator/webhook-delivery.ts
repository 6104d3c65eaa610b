import { randomBytes } from 'node:crypto';
import { Agent, request } from 'undici';
import type { Logger } from '../logging/logger.ts';
import { ControlInputError } from './errors.ts';
import type { SimulatorBot } from './simulator-bot.ts';
import { WebhookSigner } from './webhook-signature.ts';
import { backoffDelay } from '../time/backoff.ts';
import { sleepUnlessAborted } from '../time/sleep.ts';

/** One request the simulator made to a bot's callback URL, and what came back. */
export interface WebhookLogEntry {
  n: number;
  at: string;
  appId: string;
  url: string;
  kind: 'validation' | 'dispatch';
  event_id?: string;
  t?: string;
  attempt: number;
  status?: number;
  /** the answer's body (first 2 KiB) */
  body?: string;
  error?: string;
  /** ok: accepted; retry: will be sent again; gave_up: attempts exhausted; rejected: validation failed */
  outcome: 'ok' | 'retry' | 'gave_up' | 'rejected';
}

export interface WebhookRegistration { appId: string; url: string }

interface Pending { t: string; d: unknown; id: string; s: number }

interface Target {
  url: string;
  queue: Pending[];
  running: boolean;
  seq: number;
}

const TIMEOUT_MS = 5000;
const MAX_LOG = 10_000;

/**
 * Webhook delivery mode (§11): dispatches for a registered bot go out as signed POSTs, one at a
 * time per bot so they arrive in order, retried on a non-2xx answer or `{op:12, d:1}`
 * (at-least-once, as the platform behaves).
 */
export class WebhookDelivery {
  readonly #bots: Map<string, SimulatorBot>;
  readonly #signers = new Map<string, WebhookSigner>();
  readonly #targets = new Map<string, Target>();
  readonly #maxAttempts: number;
  readonly #logger: Logger;
  readonly #onLog: (entry: WebhookLogEntry) => void;
  readonly #agent = new Agent({ keepAliveTimeout: 1000, connect: { timeout: TIMEOUT_MS } });
  readonly #abort = new AbortController();
  readonly #log: WebhookLogEntry[] = [];
  #next = 1;
  #closed = false;

  constructor(init: { bots: SimulatorBot[]; maxAttempts: number; logger: Logger; onLog: (entry: WebhookLogEntry) => void; restored?: WebhookRegistration[] | undefined }) {
    this.#bots = new Map(init.bots.map((b) => [b.appId, b]));
    this.#maxAttempts = init.maxAttempts;
    this.#logger = init.logger;
    this.#onLog = init.onLog;
    for (const r of init.restored ?? []) if (this.#bots.has(r.appId)) this.#targets.set(r.appId, { url: r.url, queue: [], running: false, seq: 0 });
  }

  /** Validates the URL with op 13 (checking the answer's signature) and starts delivering to it. */
  async register(appId: unknown, url: unknown): Promise<WebhookRegistration> {
    if (typeof appId !== 'string' || !this.#bots.has(appId)) throw new ControlInputError('appId', 'appId must name a bot the simulator knows');
    if (typeof url !== 'string' || !/^https?:\/\//.test(url) || !URL.canParse(url)) throw new ControlInputError('url', 'url must be an http(s) URL');
    const plainToken = randomBytes(15).toString('base64url');
    const eventTs = String(Math.floor(Date.now() / 1000));
    const body = JSON.stringify({ op: 13, d: { plain_token: plainToken, event_ts: eventTs } });
    const entry: Omit<WebhookLogEntry, 'n' | 'at' | 'outcome'> = { appId, url, kind: 'validation', attempt: 1 };
    let answer: { status: number; text: string };
    try {
      answer = await this.#post(appId, url, body);
    } catch (err) {
      this.#record({ ...entry, error: String(err), outcome: 'rejected' });
      throw new ControlInputError('url', `callback validation failed: ${(err as Error).message}`);
    }
    let parsed: { plain_token?: unknown; signature?: unknown } | undefined;
    try {
      parsed = JSON.parse(answer.text) as typeof parsed;
    } catch {
      parsed = undefined;
    }
    const ok = answer.status === 200 && parsed?.plain_token === plainToken && this.#signer(appId).verify(eventTs, plainToken, parsed?.signature);
    this.#record({ ...entry, status: answer.status, body: answer.text.slice(0, 2048), outcome: ok ? 'ok' : 'rejected' });
    if (!ok) throw new ControlInputError('url', 'callback validation failed: the answer must be 200 with the same plain_token and a valid ed25519 signature over event_ts+plain_token');
    const previous = this.#targets.get(appId);
    // a running drain loop holds on to its target: re-registering updates it in place, or the loop
    // would stop (it is no longer the registered target) while `running` stayed true for good
    if (previous) previous.url = url;
    else this.#targets.set(appId, { url, queue: [], running: false, seq: 0 });
    return { appId, url };
  }

  unregister(appId: string): boolean {
    const target = this.#targets.get(appId);
    if (target) target.queue.length = 0;
    return this.#targets.delete(appId);
  }

  /** Queues a dispatch for `appId`'s callback (all registered bots when undefined). Returns how many were queued. */
  deliver(appId: string | undefined, t: string, d: unknown, id: string): number {
    let queued = 0;
    for (const [botId, target] of this.#targets) {
      if (appId !== undefined && botId !== appId) continue;
      target.queue.push({ t, d, id, s: ++target.seq });
      queued++;
      if (!target.running) void this.#drain(botId, target);
    }
    return queued;
  }

  registrations(): WebhookRegistration[] {
    return [...this.#targets].map(([appId, t]) => ({ appId, url: t.url }));
  }

  log(since = 0): WebhookLogEntry[] {
    return this.#log.filter((e) => e.n > since);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#abort.abort();
    for (const t of this.#targets.values()) t.queue.length = 0;
    await this.#agent.destroy().catch(() => undefined);
  }

  async #drain(appId: string, target: Target): Promise<void> {
    target.running = true;
    try {
      while (!this.#closed && this.#targets.get(appId) === target && target.queue.length > 0) {
        const item = target.queue[0]!;
        await this.#deliverOne(appId, target, item);
        target.queue.shift();
      }
    } finally {
      target.running = false;
    }
  }

  async #deliverOne(appId: string, target: Target, item: Pending): Promise<void> {
    const body = JSON.stringify({ op: 0, id: item.id, s: item.s, t: item.t, d: item.d });
    for (let attempt = 1; attempt <= this.#maxAttempts && !this.#closed; attempt++) {
      const entry: Omit<WebhookLogEntry, 'n' | 'at' | 'outcome'> = { appId, url: target.url, kind: 'dispatch', event_id: item.id, t: item.t, attempt };
      let retry: boolean;
      try {
        const answer = await this.#post(appId, target.url, body);
        retry = answer.status < 200 || answer.status >= 300 || asksRetry(answer.text);
        this.#record({ ...entry, status: answer.status, body: answer.text.slice(0, 2048), outcome: !retry ? 'ok' : attempt < this.#maxAttempts ? 'retry' : 'gave_up' });
      } catch (err) {
        if (this.#closed) return;
        retry = true;
        this.#record({ ...entry, error: (err as Error).message, outcome: attempt < this.#maxAttempts ? 'retry' : 'gave_up' });
      }
      if (!retry) return;
      if (attempt < this.#maxAttempts) await sleepUnlessAborted(backoffDelay(attempt, { baseMs: 100, maxMs: 2_000, spread: [1, 1] }), this.#abort.signal);
    }
    this.#logger.warn({ appId, eventId: item.id, t: item.t }, 'simulator gave up delivering a webhook event');
  }

  async #post(appId: string, url: string, body: string): Promise<{ status: number; text: string }> {
    const timestamp = String(Math.floor(Date.now() / 1000));
    const res = await request(url, {
      method: 'POST',
      dispatcher: this.#agent,
      signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(TIMEOUT_MS)]),
      headers: {
        'content-type': 'application/json',
        'user-agent': 'QQBot-Callback',
        'x-bot-appid': appId,
        'x-signature-timestamp': timestamp,
        'x-signature-ed25519': this.#signer(appId).sign(timestamp, body),
        'x-tps-trace-id': randomBytes(16).toString('hex'),
      },
      body,
    });
    return { status: res.statusCode, text: await res.body.text() };
  }

  #signer(appId: string): WebhookSigner {
    let signer = this.#signers.get(appId);
    if (!signer) {
      signer = new WebhookSigner(this.#bots.get(appId)!.secret);
      this.#signers.set(appId, signer);
    }
    return signer;
  }

  #record(entry: Omit<WebhookLogEntry, 'n' | 'at'>): void {
    const full: WebhookLogEntry = { n: this.#next++, at: new Date().toISOString(), ...entry };
    this.#log.push(full);
    if (this.#log.length > MAX_LOG) this.#log.shift();
    this.#onLog(full);
  }
}

/** `{op:12, d:1}` is the bot saying "failed, send again" (§11.4). */
function asksRetry(text: string): boolean {
  try {
    const parsed = JSON.parse(text) as { op?: unknown; d?: unknown };
    return parsed?.op === 12 && parsed.d === 1;
  } catch {
    return false;
  }
}
