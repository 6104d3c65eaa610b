/**
 * Per-route request queues. Each route (method + path with its major parameter kept, see
 * {@link routeKey}) runs one request at a time in FIFO order, so messages into one channel, group
 * or user keep their order; different routes run concurrently. A rate-limited request pauses its
 * route and goes again first, so nothing is dropped and order holds; a channel-wide limit (20028)
 * pauses every write route of that channel. Sends into a guild channel are paced to the platform's
 * rate before it has to refuse them (§14: 5 per second), and a request that could no longer meet
 * its deadline (a passive reply's window) fails instead of going late. Modelled on discord.js's
 * SequentialHandler.
 */
import { backoffDelay } from '../time/backoff.ts';
import { sleepUnlessAborted } from '../time/sleep.ts';

/** What one attempt at a queued request came to. */
export type AttemptOutcome<T> =
  /** `pauseMs`: the route must rest this long before its next request (quota exhausted) */
  | { readonly done: true; readonly value: T; readonly pauseMs?: number }
  /**
   * `retryAfterMs`: the platform's hint; absent → exponential backoff on the route. `scope: 'major'`:
   * the limit is on the channel/group/user, so every write route sharing the major parameter rests too.
   */
  | {
      readonly done: false;
      readonly retryAfterMs?: number;
      readonly scope?: 'route' | 'major';
      /**
       * A limit that may never lift (a platform code can also mean an exhausted quota): after
       * `after` consecutive limits the request fails with `error()` instead of waiting for ever.
       */
      readonly giveUp?: { readonly after: number; readonly error: () => Error };
    };

export interface RateLimitedInfo {
  route: string;
  /** how long the route pauses before the request goes again */
  waitMs: number;
  /** consecutive rate limits of this route */
  hits: number;
}

export interface RouteQueuesOptions {
  onRateLimited?: (info: RateLimitedInfo) => void;
  /** wait after the `hits`-th consecutive rate limit without a hint; @defaultValue 1 s doubling to 30 s, jittered */
  backoffMs?: (hits: number) => number;
  /** sends per window that a paced key (a guild channel) may make; `false`: no pacing */
  sendRate?: SendRate | false;
}

/** At most `messages` sends per `perMs` on one key. */
export interface SendRate {
  messages: number;
  perMs: number;
}

export interface ScheduleOptions {
  signal?: AbortSignal;
  /** {@link majorKey} of a write request: it also waits out limits put on its channel/group/user */
  major?: string | undefined;
  /** paced with `sendRate` under this key (a guild channel's message sends) */
  pace?: string | undefined;
  /** epoch ms after which the request must not start (a passive reply's window) */
  deadline?: number | undefined;
  /** the rejection when the limiter closes before the request ran */
  closedError: () => Error;
  /** the rejection when `signal` fires while the request waits its turn */
  abortedError: () => Error;
  /** the rejection when the request could not start before `deadline` */
  deadlineError?: (waitedMs: number) => Error;
}

/**
 * Sliding windows of recent sends per key. The window is widened by a margin: the platform counts
 * arrivals, and two sends a window apart here can arrive closer together there.
 */
export class SendWindows {
  readonly #rate: SendRate;
  readonly #windowMs: number;
  readonly #sent = new Map<string, number[]>();

  constructor(rate: SendRate) {
    this.#rate = rate;
    this.#windowMs = rate.perMs + Math.max(50, Math.round(rate.perMs * 0.1));
  }

  /** 0 when a send on `key` may go now (and it is counted); else the ms until one may. */
  take(key: string, now = Date.now()): number {
    let times = this.#sent.get(key);
    if (!times) {
      if (this.#sent.size > 10_000) this.#sweep(now);
      times = [];
      this.#sent.set(key, times);
    }
    if (times.length >= this.#rate.messages) {
      const wait = times[0]! + this.#windowMs - now;
      if (wait > 0) return wait;
      times.shift();
    }
    times.push(now);
    return 0;
  }

  #sweep(now: number): void {
    for (const [key, times] of this.#sent) if (now - times.at(-1)! > this.#windowMs) this.#sent.delete(key);
  }
}

interface Task {
  attempt: () => Promise<AttemptOutcome<unknown>>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  major: string | undefined;
  pace: string | undefined;
  deadline: number | undefined;
  queuedAt: number;
  closedError: () => Error;
  abortedError: () => Error;
  deadlineError: ((waitedMs: number) => Error) | undefined;
  onAbort: (() => void) | undefined;
  running: boolean;
  /** consecutive rate limits of this request */
  limited: number;
}

/** Path segments that are fixed words; anything else is a parameter. */
const LITERAL_SEGMENTS = new Set([
  'v2', 'users', '@me', 'guilds', 'channels', 'members', 'roles', 'mute', 'permissions', 'messages',
  'settingguide', 'dms', 'groups', 'files', 'audio', 'mic', 'announces', 'schedules', 'api_permission',
  'demand', 'pins', 'reactions', 'interactions', 'message', 'setting', 'gateway', 'bot', 'voice',
  'threads', 'webhook', 'sessions',
]);

/** Collections whose id is a major parameter: the platform limits per channel, guild, group, user. */
const MAJOR_COLLECTIONS = new Set(['channels', 'guilds', 'groups', 'dms', 'users']);

/**
 * The bucket key of a request: `POST /channels/123/messages` stays as is (limits are per channel),
 * `DELETE /channels/123/messages/456` becomes `DELETE /channels/123/messages/:id`.
 */
export function routeKey(method: string, path: string): string {
  const bare = path.split('?')[0] ?? path;
  const segments = bare.split('/');
  const out: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i] ?? '';
    if (seg === '' || LITERAL_SEGMENTS.has(seg)) {
      out.push(seg);
      continue;
    }
    const previous = segments[i - 1] ?? '';
    out.push(MAJOR_COLLECTIONS.has(previous) ? seg : ':id');
  }
  return `${method.toUpperCase()} ${out.join('/')}`;
}

/**
 * The channel/group/user a write request acts on (`/channels/123`), or undefined for reads and for
 * paths without one. Writes sharing it share a channel-wide limit such as 20028.
 */
export function majorKey(method: string, path: string): string | undefined {
  const upper = method.toUpperCase();
  if (upper === 'GET' || upper === 'HEAD') return undefined;
  const segments = (path.split('?')[0] ?? path).split('/');
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i] ?? '';
    const previous = segments[i - 1] ?? '';
    if (seg !== '' && !LITERAL_SEGMENTS.has(seg) && MAJOR_COLLECTIONS.has(previous)) return `/${previous}/${seg}`;
  }
  return undefined;
}

export class RouteQueues {
  readonly #options: RouteQueuesOptions;
  readonly #buckets = new Map<string, Bucket>();
  readonly #paced: SendWindows | undefined;
  /**
   * Route or `major <key>` → epoch ms before which it must not send. Kept here, not in the bucket:
   * an idle bucket is dropped, and the pause must outlive it (a quota exhausted by the last request
   * of a burst still holds for the next one).
   */
  readonly #restUntil = new Map<string, number>();
  #closed = false;

  constructor(options: RouteQueuesOptions) {
    this.#options = options;
    this.#paced = options.sendRate ? new SendWindows(options.sendRate) : undefined;
  }

  /** Queue `attempt` on `route`; it runs again (after the pause) as long as it reports a rate limit. */
  schedule<T>(route: string, attempt: () => Promise<AttemptOutcome<T>>, options: ScheduleOptions): Promise<T> {
    if (this.#closed) return Promise.reject(options.closedError());
    if (options.signal?.aborted) return Promise.reject(options.abortedError());
    let bucket = this.#buckets.get(route);
    if (!bucket) {
      const created: Bucket = new Bucket(route, this.#options, {
        restMs: (major) => this.#restMs(route, major),
        rest: (ms, major) => this.#rest(major === undefined ? route : `major ${major}`, ms),
        pace: (key) => this.#paced?.take(key) ?? 0,
        idle: () => {
          if (this.#buckets.get(route) === created) this.#buckets.delete(route);
        },
      });
      bucket = created;
      this.#buckets.set(route, bucket);
    }
    return bucket.push(attempt, options);
  }

  /** Number of routes with queued or running requests (for metrics and tests). */
  get activeRoutes(): number {
    return this.#buckets.size;
  }

  close(): void {
    this.#closed = true;
    for (const bucket of this.#buckets.values()) bucket.close();
    this.#buckets.clear();
    this.#restUntil.clear();
  }

  #restMs(route: string, major: string | undefined): number {
    const own = this.#restUntil.get(route) ?? 0;
    const shared = major === undefined ? 0 : (this.#restUntil.get(`major ${major}`) ?? 0);
    return Math.max(own, shared) - Date.now();
  }

  #rest(key: string, ms: number): void {
    const now = Date.now();
    for (const [k, until] of this.#restUntil) if (until <= now) this.#restUntil.delete(k);
    this.#restUntil.set(key, Math.max(this.#restUntil.get(key) ?? 0, now + ms));
  }
}

function defaultBackoff(hits: number): number {
  return backoffDelay(hits, { baseMs: 1_000, maxMs: 30_000, spread: [0.75, 1.25] });
}

interface BucketHooks {
  /** ms this route (and its major, for writes) must still rest; ≤ 0 when it may send */
  restMs(major: string | undefined): number;
  /** make the route, or every write on `major`, rest `ms` */
  rest(ms: number, major?: string): void;
  /** 0 when a send paced under `key` may go now (it is counted); else the ms to wait */
  pace(key: string): number;
  idle(): void;
}

class Bucket {
  readonly #route: string;
  readonly #options: RouteQueuesOptions;
  readonly #hooks: BucketHooks;
  readonly #queue: Task[] = [];
  #draining = false;
  #hits = 0;
  /** aborted by close(), which must not wait out a pause */
  readonly #closing = new AbortController();

  constructor(route: string, options: RouteQueuesOptions, hooks: BucketHooks) {
    this.#route = route;
    this.#options = options;
    this.#hooks = hooks;
  }

  push<T>(attempt: () => Promise<AttemptOutcome<T>>, options: ScheduleOptions): Promise<T> {
    const signal = options.signal;
    return new Promise<T>((resolve, reject) => {
      const task: Task = {
        attempt,
        resolve: resolve as (value: unknown) => void,
        reject,
        signal,
        major: options.major,
        pace: options.pace,
        deadline: options.deadline,
        queuedAt: Date.now(),
        closedError: options.closedError,
        abortedError: options.abortedError,
        deadlineError: options.deadlineError,
        onAbort: undefined,
        running: false,
        limited: 0,
      };
      if (signal) {
        // A request still waiting its turn leaves the queue at once; a running one is aborted by
        // the request core, which sees the same signal.
        task.onAbort = () => {
          if (task.running) return;
          this.#remove(task);
          reject(task.abortedError());
        };
        signal.addEventListener('abort', task.onAbort, { once: true });
      }
      this.#queue.push(task);
      void this.#drain();
    });
  }

  close(): void {
    this.#closing.abort();
    for (const task of this.#queue.splice(0)) {
      if (!task.running) this.#settle(task, false, task.closedError());
    }
  }

  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (!this.#closing.signal.aborted && this.#queue.length > 0) {
        const task = this.#queue[0]!;
        const restMs = this.#hooks.restMs(task.major);
        if (this.#pastDeadline(task, Math.max(0, restMs))) continue;
        if (restMs > 0) {
          // the head may be aborted meanwhile; look at the queue again after the pause
          await this.#sleep(restMs);
          continue;
        }
        const paceMs = task.pace === undefined ? 0 : this.#hooks.pace(task.pace);
        if (paceMs > 0) {
          if (this.#pastDeadline(task, paceMs)) continue;
          await this.#sleep(paceMs);
          continue;
        }
        task.running = true;
        let outcome: AttemptOutcome<unknown>;
        try {
          outcome = await task.attempt();
        } catch (err) {
          this.#remove(task);
          this.#settle(task, false, err);
          continue;
        } finally {
          task.running = false;
        }
        if (outcome.done) {
          this.#hits = 0;
          this.#remove(task);
          this.#settle(task, true, outcome.value);
          if (outcome.pauseMs && outcome.pauseMs > 0) this.#hooks.rest(outcome.pauseMs);
          continue;
        }
        // Rate limited: the platform did not accept the request, so it is safe to send again.
        if (this.#closing.signal.aborted) {
          this.#settle(task, false, task.closedError());
          break;
        }
        if (task.signal?.aborted) {
          // aborted while its request was out: it does not go again, but the route still rests
          this.#remove(task);
          this.#settle(task, false, task.abortedError());
        }
        this.#hits++;
        task.limited++;
        const waitMs = outcome.retryAfterMs ?? (this.#options.backoffMs ?? defaultBackoff)(this.#hits);
        this.#options.onRateLimited?.({ route: this.#route, waitMs, hits: this.#hits });
        this.#hooks.rest(waitMs);
        if (outcome.scope === 'major' && task.major !== undefined) this.#hooks.rest(waitMs, task.major);
        if (outcome.giveUp && task.limited > outcome.giveUp.after && this.#queue.includes(task)) {
          this.#remove(task);
          this.#settle(task, false, outcome.giveUp.error());
        }
      }
    } finally {
      this.#draining = false;
      if (this.#queue.length === 0 || this.#closing.signal.aborted) this.#hooks.idle();
    }
  }

  /** Fails the head if it cannot start before its deadline, even after waiting `waitMs`. */
  #pastDeadline(task: Task, waitMs: number): boolean {
    if (task.deadline === undefined || Date.now() + waitMs < task.deadline) return false;
    this.#remove(task);
    this.#settle(task, false, task.deadlineError?.(Date.now() - task.queuedAt) ?? task.closedError());
    return true;
  }

  #remove(task: Task): void {
    const index = this.#queue.indexOf(task);
    if (index >= 0) this.#queue.splice(index, 1);
  }

  #settle(task: Task, ok: boolean, value: unknown): void {
    if (task.signal && task.onAbort) task.signal.removeEventListener('abort', task.onAbort);
    if (ok) task.resolve(value);
    else task.reject(value);
  }

  // Not unref'd: queued requests are real pending work; close() ends it.
  async #sleep(ms: number): Promise<void> {
    await sleepUnlessAborted(ms, this.#closing.signal);
  }
}

const templates = new Map<string, string>();

/** A route key with every parameter folded (`POST /channels/:id/messages`): a bounded metric label. */
export function routeTemplate(route: string): string {
  let template = templates.get(route);
  if (template === undefined) {
    template = route
      .split('/')
      .map((seg, i) => (i === 0 || seg === '' || LITERAL_SEGMENTS.has(seg) || seg.startsWith(':') ? seg : ':id'))
      .join('/');
    // one entry per channel/group/user a bot talks to: bounded, but not by much
    if (templates.size >= 10_000) templates.clear();
    templates.set(route, template);
  }
  return template;
}
