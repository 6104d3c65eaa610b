/**
 * Per-route request queues. Each route (method + path with its major parameter kept, see
 * {@link routeKey}) runs one request at a time in FIFO order; a rate-limited request pauses its
 * route and goes again first, so nothing is dropped and order holds. Other routes keep going.
 * Modelled on discord.js's SequentialHandler.
 */

/** What one attempt at a queued request came to. */
export type AttemptOutcome<T> =
  /** `pauseMs`: the route must rest this long before its next request (quota exhausted) */
  | { readonly done: true; readonly value: T; readonly pauseMs?: number }
  /** `retryAfterMs`: the platform's hint; absent → exponential backoff on the route */
  | { readonly done: false; readonly retryAfterMs?: number };

export interface RateLimitedInfo {
  route: string;
  /** how long the route pauses before the request goes again */
  waitMs: number;
  /** consecutive rate limits of this route */
  hits: number;
}

export interface RateLimiterOptions {
  onRateLimited?: (info: RateLimitedInfo) => void;
  /** wait after the `hits`-th consecutive rate limit without a hint; @defaultValue 1 s doubling to 30 s, jittered */
  backoffMs?: (hits: number) => number;
}

export interface ScheduleOptions {
  signal?: AbortSignal;
  /** the rejection when the limiter closes before the request ran */
  closedError: () => Error;
  /** the rejection when `signal` fires while the request waits its turn */
  abortedError: () => Error;
}

interface Task {
  attempt: () => Promise<AttemptOutcome<unknown>>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  closedError: () => Error;
  abortedError: () => Error;
  onAbort: (() => void) | undefined;
  running: boolean;
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

export class RateLimiter {
  readonly #options: RateLimiterOptions;
  readonly #buckets = new Map<string, Bucket>();
  #closed = false;

  constructor(options: RateLimiterOptions) {
    this.#options = options;
  }

  /** Queue `attempt` on `route`; it runs again (after the pause) as long as it reports a rate limit. */
  schedule<T>(route: string, attempt: () => Promise<AttemptOutcome<T>>, options: ScheduleOptions): Promise<T> {
    if (this.#closed) return Promise.reject(options.closedError());
    if (options.signal?.aborted) return Promise.reject(options.abortedError());
    let bucket = this.#buckets.get(route);
    if (!bucket) {
      bucket = new Bucket(route, this.#options, () => {
        if (this.#buckets.get(route) === bucket) this.#buckets.delete(route);
      });
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
  }
}

function defaultBackoff(hits: number): number {
  const base = Math.min(30_000, 1000 * 2 ** (hits - 1));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

class Bucket {
  readonly #route: string;
  readonly #options: RateLimiterOptions;
  readonly #onIdle: () => void;
  readonly #queue: Task[] = [];
  #draining = false;
  #hits = 0;
  #pause: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  #closed = false;

  constructor(route: string, options: RateLimiterOptions, onIdle: () => void) {
    this.#route = route;
    this.#options = options;
    this.#onIdle = onIdle;
  }

  push<T>(attempt: () => Promise<AttemptOutcome<T>>, options: ScheduleOptions): Promise<T> {
    const signal = options.signal;
    return new Promise<T>((resolve, reject) => {
      const task: Task = {
        attempt,
        resolve: resolve as (value: unknown) => void,
        reject,
        signal,
        closedError: options.closedError,
        abortedError: options.abortedError,
        onAbort: undefined,
        running: false,
      };
      if (signal) {
        // A request still waiting its turn leaves the queue at once; a running one is aborted by
        // the request core, which sees the same signal.
        task.onAbort = () => {
          if (task.running) return;
          const index = this.#queue.indexOf(task);
          if (index >= 0) this.#queue.splice(index, 1);
          reject(task.abortedError());
        };
        signal.addEventListener('abort', task.onAbort, { once: true });
      }
      this.#queue.push(task);
      void this.#drain();
    });
  }

  close(): void {
    this.#closed = true;
    if (this.#pause) {
      clearTimeout(this.#pause.timer);
      this.#pause.wake();
    }
    for (const task of this.#queue.splice(0)) {
      if (!task.running) this.#settle(task, false, task.closedError());
    }
  }

  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (!this.#closed && this.#queue.length > 0) {
        const task = this.#queue[0]!;
        task.running = true;
        let outcome: AttemptOutcome<unknown>;
        try {
          outcome = await task.attempt();
        } catch (err) {
          this.#remove(task);
          this.#settle(task, false, err);
          continue;
        }
        if (outcome.done) {
          this.#hits = 0;
          this.#remove(task);
          this.#settle(task, true, outcome.value);
          if (outcome.pauseMs && outcome.pauseMs > 0 && this.#queue.length > 0 && !this.#closed) await this.#sleep(outcome.pauseMs);
          continue;
        }
        // Rate limited: the platform did not accept the request, so it is safe to send again.
        task.running = false;
        if (this.#closed) {
          this.#settle(task, false, task.closedError());
          break;
        }
        this.#hits++;
        const waitMs = outcome.retryAfterMs ?? (this.#options.backoffMs ?? defaultBackoff)(this.#hits);
        this.#options.onRateLimited?.({ route: this.#route, waitMs, hits: this.#hits });
        await this.#sleep(waitMs);
        if (task.signal?.aborted && this.#queue[0] === task) {
          this.#remove(task);
          this.#settle(task, false, task.abortedError());
        }
      }
    } finally {
      this.#draining = false;
      if (this.#queue.length === 0 || this.#closed) this.#onIdle();
    }
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

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        this.#pause = undefined;
        resolve();
      };
      // Not unref'd: queued requests are real pending work; close() clears it.
      const timer = setTimeout(wake, ms);
      this.#pause = { timer, wake };
    });
  }
}

/** A route key with every parameter folded (`POST /channels/:id/messages`): a bounded metric label. */
export function routeTemplate(route: string): string {
  return route
    .split('/')
    .map((seg, i) => (i === 0 || seg === '' || LITERAL_SEGMENTS.has(seg) || seg.startsWith(':') ? seg : ':id'))
    .join('/');
}
