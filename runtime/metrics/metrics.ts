import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Every state a shard can report; the state gauge keeps one series per state so dashboards can stack them. */
export const SHARD_STATES = ['connecting', 'identifying', 'resuming', 'ready', 'reconnecting', 'stopped', 'failed'] as const;
export type ShardState = (typeof SHARD_STATES)[number];

/** How a handler run ended; the sandbox reports the limit that stopped it. */
export type HandlerStatus = 'ok' | 'error' | 'timeout' | 'cpu' | 'memory' | (string & {});

export interface RuntimeMetricsOptions {
  /**
   * Also export Node's process metrics (CPU, heap, event loop lag, GC).
   * @defaultValue true
   */
  defaultMetrics?: boolean;
  /** Labels added to every series (e.g. `{ instance: 'gateway-1' }`). */
  defaultLabels?: Record<string, string>;
}

// Handlers are expected to take milliseconds; the tail shows plugins that drift toward their limits.
const HANDLER_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const API_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const WAIT_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The runtime's Prometheus metrics, on a registry of their own so that several runtimes (tests,
 * embedders) never share or clash over the global one. Recording methods are called from hot
 * paths: metric objects are created once here, each call only looks up its label set.
 *
 * `route` labels must be route templates (`POST /channels/{channel_id}/messages`), never URLs
 * with ids in them, or the series count grows without bound.
 */
export class RuntimeMetrics {
  readonly registry: Registry;
  readonly #events: Counter<'bot' | 'type' | 'transport'>;
  readonly #deduplicated: Counter<'bot'>;
  readonly #handlerSeconds: Histogram<'bot' | 'plugin' | 'status'>;
  readonly #apiCalls: Counter<'bot' | 'route' | 'status'>;
  readonly #apiSeconds: Histogram<'bot' | 'route'>;
  readonly #rateLimitSeconds: Histogram<'bot' | 'route'>;
  readonly #shardState: Gauge<'bot' | 'shard' | 'state'>;
  readonly #reconnects: Counter<'bot' | 'shard' | 'reason'>;
  readonly #pluginRestarts: Counter<'bot' | 'plugin' | 'reason'>;
  readonly #pluginQuarantines: Counter<'bot' | 'plugin'>;
  readonly #hostCrashes: Counter<'kind'>;
  readonly #pluginReloads: Counter<'bot' | 'plugin' | 'result'>;
  readonly #eventsDropped: Counter<'bot' | 'plugin' | 'reason'>;
  readonly #repliesFailed: Counter<'bot' | 'plugin' | 'reason'>;
  readonly #webhookRejected: Counter<'bot' | 'reason'>;
  #backlogs: () => Array<{ bot: string; plugin: string; events: number; bytes: number }> = () => [];
  readonly #children = new Map<object, Map<string, unknown>>();
  readonly #shardMoves: Counter<'bot' | 'direction'>;
  readonly #shardTakeovers: Counter<'bot'>;
  readonly #leaseLosses: Counter<'bot'>;
  readonly #leaseReclaims: Counter<'bot'>;
  readonly #fencingRefusals: Counter<'bot'>;
  readonly #shardsHeld: Gauge<'bot'>;
  readonly #redisUp: Gauge<'bot'>;
  readonly #redisOutages: Counter<'bot'>;
  readonly #repliesDeduplicated: Counter<'bot'>;
  readonly #redelivered: Counter<'bot'>;
  readonly #streamPublished: Counter<'bot'>;
  readonly #streamDropped: Counter<'bot' | 'reason'>;
  readonly #streamBuffered: Gauge<'bot'>;
  readonly #streamAcked: Counter<'bot'>;
  readonly #streamClaimed: Counter<'bot'>;
  readonly #streamDead: Counter<'bot'>;
  readonly #streamLength: Gauge<'bot'>;
  readonly #streamLag: Gauge<'bot'>;
  readonly #streamPending: Gauge<'bot' | 'consumer'>;
  readonly #streamDeadLetters: Gauge<'bot'>;
  readonly #streamConsumers = new Map<string, Set<string>>();

  constructor(options: RuntimeMetricsOptions = {}) {
    const registers = [new Registry()];
    this.registry = registers[0]!;
    if (options.defaultLabels) this.registry.setDefaultLabels(options.defaultLabels);
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });

    this.#events = new Counter({
      name: 'qqbot_events_received_total',
      help: 'Gateway and webhook events received, before deduplication.',
      labelNames: ['bot', 'type', 'transport'],
      registers,
    });
    this.#deduplicated = new Counter({
      name: 'qqbot_events_deduplicated_total',
      help: 'Events dropped because the same event was already received (replays, webhook retries).',
      labelNames: ['bot'],
      registers,
    });
    this.#handlerSeconds = new Histogram({
      name: 'qqbot_handler_duration_seconds',
      help: 'Wall time of plugin event handlers, by how they ended (ok, error, timeout, cpu, memory).',
      labelNames: ['bot', 'plugin', 'status'],
      buckets: HANDLER_BUCKETS,
      registers,
    });
    this.#apiCalls = new Counter({
      name: 'qqbot_api_requests_total',
      help: 'OpenAPI requests by route template and HTTP status (or "error" when no response came).',
      labelNames: ['bot', 'route', 'status'],
      registers,
    });
    this.#apiSeconds = new Histogram({
      name: 'qqbot_api_request_duration_seconds',
      help: 'OpenAPI request latency by route template.',
      labelNames: ['bot', 'route'],
      buckets: API_BUCKETS,
      registers,
    });
    this.#rateLimitSeconds = new Histogram({
      name: 'qqbot_ratelimit_wait_seconds',
      help: 'Time OpenAPI requests waited for a rate-limit bucket before being sent.',
      labelNames: ['bot', 'route'],
      buckets: WAIT_BUCKETS,
      registers,
    });
    this.#shardState = new Gauge({
      name: 'qqbot_shard_state',
      help: 'Current shard state: 1 for the state the shard is in, 0 for the others.',
      labelNames: ['bot', 'shard', 'state'],
      registers,
    });
    this.#reconnects = new Counter({
      name: 'qqbot_shard_reconnects_total',
      help: 'Shard reconnects by reason (close code, heartbeat timeout, server request).',
      labelNames: ['bot', 'shard', 'reason'],
      registers,
    });
    this.#pluginRestarts = new Counter({
      name: 'qqbot_plugin_restarts_total',
      help: 'Plugin instance restarts by reason (crash, cpu, memory, timeout, host exit).',
      labelNames: ['bot', 'plugin', 'reason'],
      registers,
    });
    this.#pluginQuarantines = new Counter({
      name: 'qqbot_plugin_quarantines_total',
      help: 'Times a plugin was quarantined after repeated failures.',
      labelNames: ['bot', 'plugin'],
      registers,
    });
    this.#eventsDropped = new Counter({
      name: 'qqbot_events_dropped_total',
      help: 'Events a plugin did not handle, by reason (backlog_full, host_crashed, quarantined, timeout, cpu, memory, deadline, unloaded, stopped, …).',
      labelNames: ['bot', 'plugin', 'reason'],
      registers,
    });
    this.#repliesFailed = new Counter({
      name: 'qqbot_replies_failed_total',
      help: 'Replies and sends plugins asked for that did not go out, by error code (E_REPLY_WINDOW, E_OPENAPI, …).',
      labelNames: ['bot', 'plugin', 'reason'],
      registers,
    });
    const backlogs = () => this.#backlogs();
    new Gauge({
      name: 'qqbot_plugin_backlog_events',
      help: 'Events waiting for a plugin instance (its backlog is bounded in bytes, queueBytes).',
      labelNames: ['bot', 'plugin'],
      registers,
      collect() {
        this.reset();
        for (const b of backlogs()) this.set({ bot: b.bot, plugin: b.plugin }, b.events);
      },
    });
    new Gauge({
      name: 'qqbot_plugin_backlog_bytes',
      help: 'Bytes of event JSON waiting for a plugin instance.',
      labelNames: ['bot', 'plugin'],
      registers,
      collect() {
        this.reset();
        for (const b of backlogs()) this.set({ bot: b.bot, plugin: b.plugin }, b.bytes);
      },
    });
    this.#hostCrashes = new Counter({
      name: 'qqbot_plugin_host_crashes_total',
      help: 'Plugin-host process crashes by kind (catastrophic V8 error, stuck, exited or killed); every plugin it ran is restarted.',
      labelNames: ['kind'],
      registers,
    });
    this.#pluginReloads = new Counter({
      name: 'qqbot_plugin_reloads_total',
      help: 'Hot reloads by result (ok: new version live; failed: old version kept).',
      labelNames: ['bot', 'plugin', 'result'],
      registers,
    });
    this.#webhookRejected = new Counter({
      name: 'qqbot_webhook_rejected_total',
      help: 'Webhook requests refused, by reason (signature, timestamp, headers, busy, too_large, replay, …).',
      labelNames: ['bot', 'reason'],
      registers,
    });
    this.#shardMoves = new Counter({
      name: 'qqbot_shard_moves_total',
      help: 'Redis sessions: shards handed over between live processes to keep the spread even (in: taken here, out: released from here).',
      labelNames: ['bot', 'direction'],
      registers,
    });
    this.#shardTakeovers = new Counter({
      name: 'qqbot_shard_takeovers_total',
      help: 'Redis sessions: shards taken over here after their previous holder stopped renewing its lease (died or paused).',
      labelNames: ['bot'],
      registers,
    });
    this.#leaseLosses = new Counter({
      name: 'qqbot_shard_lease_losses_total',
      help: 'Redis sessions: shard leases this process found held by another process (it was paused or cut off past its lease).',
      labelNames: ['bot'],
      registers,
    });
    this.#leaseReclaims = new Counter({
      name: 'qqbot_shard_lease_reclaims_total',
      help: 'Redis sessions: leases re-taken after Redis lost them (restarted empty, or unreachable past the TTL) while nobody else took the shard.',
      labelNames: ['bot'],
      registers,
    });
    this.#fencingRefusals = new Counter({
      name: 'qqbot_fencing_refusals_total',
      help: 'Redis sessions: events not dispatched because the lease of the shard they came on had passed to another process.',
      labelNames: ['bot'],
      registers,
    });
    this.#shardsHeld = new Gauge({
      name: 'qqbot_shards_held',
      help: 'Redis sessions: shards this process holds.',
      labelNames: ['bot'],
      registers,
    });
    this.#redisUp = new Gauge({
      name: 'qqbot_sessions_redis_up',
      help: 'Redis sessions: 1 while the coordination Redis is reachable, 0 while it is not.',
      labelNames: ['bot'],
      registers,
    });
    this.#redisOutages = new Counter({
      name: 'qqbot_sessions_redis_outages_total',
      help: 'Redis sessions: times the coordination Redis became unreachable.',
      labelNames: ['bot'],
      registers,
    });
    this.#repliesDeduplicated = new Counter({
      name: 'qqbot_replies_deduplicated_total',
      help: 'Redis sessions: replies not sent because another process of the bot had already sent the same one (an event handled again after its shard moved).',
      labelNames: ['bot'],
      registers,
    });
    this.#redelivered = new Counter({
      name: 'qqbot_events_redelivered_total',
      help: 'Redis sessions: events handled here although another process had taken them, because it lost their shard before finishing them.',
      labelNames: ['bot'],
      registers,
    });
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) => new Counter<L>({ name, help, labelNames, registers });
    const gauge = <L extends string>(name: string, help: string, labelNames: L[]) => new Gauge<L>({ name, help, labelNames, registers });
    this.#streamPublished = counter('qqbot_stream_published_total', 'Gateway role: events appended to the bot\'s Redis Stream.', ['bot']);
    this.#streamDropped = counter('qqbot_stream_dropped_total', 'Gateway role: events never appended to the Stream, by reason (buffer_full: Redis unreachable past stream.bufferBytes; shutdown: still buffered at stop). Worker role: trimmed: pending entries cut by MAXLEN.', ['bot', 'reason']);
    this.#streamBuffered = gauge('qqbot_stream_buffered_bytes', 'Gateway role: bytes of events waiting in memory for Redis to take them.', ['bot']);
    this.#streamAcked = counter('qqbot_stream_acked_total', 'Worker role: Stream entries acknowledged after every plugin handler finished (or found already handled).', ['bot']);
    this.#streamClaimed = counter('qqbot_stream_claimed_total', 'Worker role: pending entries taken over after claimIdleMs (a dead worker\'s, or a failed attempt to retry).', ['bot']);
    this.#streamDead = counter('qqbot_stream_dead_total', 'Worker role: entries moved to the dead-letter stream after stream.maxDeliveries failed deliveries.', ['bot']);
    this.#streamLength = gauge('qqbot_stream_length', 'Entries in the bot\'s event Stream (read from Redis).', ['bot']);
    this.#streamLag = gauge('qqbot_stream_lag', 'Stream entries not yet read by any worker of the group.', ['bot']);
    this.#streamPending = gauge('qqbot_stream_pending', 'Stream entries read by a worker and not yet acknowledged, per consumer.', ['bot', 'consumer']);
    this.#streamDeadLetters = gauge('qqbot_stream_dead_letters', 'Entries in the bot\'s dead-letter stream.', ['bot']);
  }

  /** An event one plugin did not handle, and why (every event ends handled or here). */
  eventDropped(bot: string, plugin: string, reason: string): void {
    this.#eventsDropped.inc({ bot, plugin, reason });
  }

  /** A reply or send a plugin asked for that did not go out, by error code. */
  replyFailed(bot: string, plugin: string, reason: string): void {
    this.#repliesFailed.inc({ bot, plugin, reason });
  }

  /** Where the backlog gauges read from, at scrape time. */
  watchBacklogs(read: () => Array<{ bot: string; plugin: string; events: number; bytes: number }>): void {
    this.#backlogs = read;
  }

  /**
   * Redis sessions: a lease this process took or gave up. Moves count hand-overs between live processes
   * (in: acquired after a release; out: released); takeovers count shards taken from a process whose
   * lease expired; losses count leases found held by someone else; reclaims count leases re-taken after
   * Redis lost them.
   */
  leaseChange(bot: string, change: 'acquired' | 'released' | 'lost' | 'reclaimed', how: string | undefined, held: number): void {
    if (change === 'acquired' && how === 'moved') this.#shardMoves.inc({ bot, direction: 'in' });
    if (change === 'acquired' && how === 'takeover') this.#shardTakeovers.inc({ bot });
    if (change === 'released') this.#shardMoves.inc({ bot, direction: 'out' });
    if (change === 'lost') this.#leaseLosses.inc({ bot });
    if (change === 'reclaimed') this.#leaseReclaims.inc({ bot });
    this.#shardsHeld.set({ bot }, held);
  }

  fencingRefusal(bot: string): void {
    this.#fencingRefusals.inc({ bot });
  }

  redisState(bot: string, up: boolean, outage: boolean): void {
    this.#redisUp.set({ bot }, up ? 1 : 0);
    if (outage) this.#redisOutages.inc({ bot });
  }

  replyDeduplicated(bot: string): void {
    this.#repliesDeduplicated.inc({ bot });
  }

  eventRedelivered(bot: string): void {
    this.#redelivered.inc({ bot });
  }

  streamPublished(bot: string): void {
    this.#streamPublished.inc({ bot });
  }

  streamDropped(bot: string, reason: string, count = 1): void {
    this.#streamDropped.inc({ bot, reason }, count);
  }

  streamBuffered(bot: string, bytes: number): void {
    this.#streamBuffered.set({ bot }, bytes);
  }

  streamAcked(bot: string): void {
    this.#streamAcked.inc({ bot });
  }

  streamClaimed(bot: string, entries: number): void {
    this.#streamClaimed.inc({ bot }, entries);
  }

  streamDead(bot: string): void {
    this.#streamDead.inc({ bot });
  }

  /** The Stream as last read from Redis; consumers that left the group leave the pending gauge. */
  streamState(bot: string, state: { length?: number; lag?: number; dead?: number; consumers: Array<{ name: string; pending: number }> }): void {
    if (state.length !== undefined) this.#streamLength.set({ bot }, state.length);
    if (state.lag !== undefined) this.#streamLag.set({ bot }, state.lag);
    if (state.dead !== undefined) this.#streamDeadLetters.set({ bot }, state.dead);
    const now = new Set(state.consumers.map((c) => c.name));
    for (const gone of this.#streamConsumers.get(bot) ?? []) if (!now.has(gone)) this.#streamPending.remove({ bot, consumer: gone });
    this.#streamConsumers.set(bot, now);
    for (const consumer of state.consumers) this.#streamPending.set({ bot, consumer: consumer.name }, consumer.pending);
  }

  eventReceived(bot: string, type: string, transport: 'websocket' | 'webhook' | (string & {})): void {
    this.#child(this.#events, bot, type, transport).inc();
  }

  eventDeduplicated(bot: string): void {
    this.#deduplicated.inc({ bot });
  }

  handlerFinished(bot: string, plugin: string, status: HandlerStatus, seconds: number): void {
    this.#child(this.#handlerSeconds, bot, plugin, status).observe(seconds);
  }

  /** `status` is the HTTP status, or a word such as 'error' when the request got no response. */
  apiCall(bot: string, route: string, status: number | string, seconds: number): void {
    this.#child(this.#apiCalls, bot, route, String(status)).inc();
    this.#child(this.#apiSeconds, bot, route).observe(seconds);
  }

  /**
   * The labelled child of a metric, kept: these are called per event and per request, and prom-client
   * hashes the label set on every plain `inc`/`observe`. Label values come in `labelNames` order.
   */
  #child<C>(metric: { labels(...values: string[]): C }, ...values: string[]): C {
    let children = this.#children.get(metric);
    if (!children) {
      children = new Map();
      this.#children.set(metric, children);
    }
    const key = values.join('\u0000');
    let child = children.get(key) as C | undefined;
    if (!child) {
      child = metric.labels(...values);
      children.set(key, child);
    }
    return child;
  }

  rateLimitWait(bot: string, route: string, seconds: number): void {
    this.#rateLimitSeconds.observe({ bot, route }, seconds);
  }

  shardState(bot: string, shard: number, state: ShardState): void {
    const id = String(shard);
    for (const s of SHARD_STATES) this.#shardState.set({ bot, shard: id, state: s }, s === state ? 1 : 0);
  }

  reconnect(bot: string, shard: number, reason: string): void {
    this.#reconnects.inc({ bot, shard: String(shard), reason });
  }

  pluginRestart(bot: string, plugin: string, reason: string): void {
    this.#pluginRestarts.inc({ bot, plugin, reason });
  }

  hostCrashed(kind: string): void {
    this.#hostCrashes.inc({ kind });
  }

  pluginQuarantined(bot: string, plugin: string): void {
    this.#pluginQuarantines.inc({ bot, plugin });
  }

  pluginReload(bot: string, plugin: string, ok: boolean): void {
    this.#pluginReloads.inc({ bot, plugin, result: ok ? 'ok' : 'failed' });
  }

  webhookRejected(bot: string, reason: string): void {
    this.#webhookRejected.inc({ bot, reason });
  }

  /** The exposition text, as served on `/metrics`. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
