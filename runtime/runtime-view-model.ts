/**
 * What the console shows of a running runtime: snapshots of its bots and plugins, the live feed, the
 * simulator chat, and the sends that failed. The runtime composes the parts; this reads them.
 */
import { EventEmitter } from 'node:events';
import type { Bot } from './bot/bot.ts';
import { ChatHistory } from './console/chat-history.ts';
import type { BotView, ChatInput, LiveEntry, PluginView, RuntimeView, RuntimeViewEvents } from './console/runtime-view.ts';
import { describeIntents } from './gateway/intents.ts';
import { approveCommand } from './plugins/grants.ts';
import type { InstanceStats } from './plugins/sandbox/supervisor.ts';
import { VERSION } from './version.ts';

export interface RuntimeViewSource {
  bots(): Iterable<Bot>;
  pluginStats(): InstanceStats[];
  startedAt: number;
}

export class RuntimeViewModel extends EventEmitter<RuntimeViewEvents> implements RuntimeView {
  readonly #source: RuntimeViewSource;
  /** replies and sends that did not go out, by instance id and error code */
  readonly #sendFailures = new Map<string, Record<string, number>>();
  chat?: RuntimeView['chat'];

  constructor(source: RuntimeViewSource) {
    super();
    this.#source = source;
  }

  /** Whether a console is watching: the dispatch path formats live entries only then. */
  get watched(): boolean {
    return this.listenerCount('live') > 0;
  }

  live(entry: Omit<LiveEntry, 'at'>): void {
    this.emit('live', { at: Date.now(), ...entry });
  }

  sendFailed(bot: string, plugin: string, code: string): void {
    const counts = this.#sendFailures.get(`${bot}/${plugin}`) ?? {};
    counts[code] = (counts[code] ?? 0) + 1;
    this.#sendFailures.set(`${bot}/${plugin}`, counts);
  }

  /** The chat pane, for bots on the embedded simulator: `post` hands a person's message to it. */
  openChat(post: (input: ChatInput) => { id: string }): ChatHistory {
    const history = new ChatHistory();
    history.on('chat', (message) => this.emit('chat', message));
    this.chat = {
      send: async (input) => {
        const posted = post(input);
        history.push({ bot: input.bot, from: 'user', kind: input.kind, content: input.content });
        return posted;
      },
      history: (since) => history.since(since),
    };
    return history;
  }

  snapshot(): { version: string; startedAt: number; bots: BotView[] } {
    const stats = this.#source.pluginStats();
    const bots = [...this.#source.bots()].map((bot): BotView => {
      const prefix = `${bot.config.name}/`;
      const plugins = bot.plugins.loaded.map((plugin): PluginView => {
        const s = stats.find((entry) => entry.id === `${prefix}${plugin.name}`);
        const sendFailures = this.#sendFailures.get(`${prefix}${plugin.name}`) ?? {};
        const grants = { source: plugin.source, ...(plugin.pending.length > 0 ? { pending: [...plugin.pending], approve: approveCommand(plugin.name) } : {}) };
        if (!s) return { name: plugin.name, version: plugin.version, status: 'stopped', events: 0, errors: 0, cpuMs: 0, heapUsedBytes: 0, restarts: 0, queued: 0, queuedBytes: 0, dropped: {}, sendFailures, ...grants };
        const { id: _id, ...counters } = s;
        return { name: plugin.name, ...counters, sendFailures, ...grants };
      });
      const cluster = bot.sessions?.cluster?.();
      return {
        name: bot.config.name,
        appId: bot.config.appId,
        state: bot.state,
        ...(bot.error ? { error: bot.error.message } : {}),
        transport: bot.config.transport.kind,
        intents: describeIntents(bot.intents),
        shards: (bot.sessions?.shards() ?? []).map((s) => ({ id: s.id, count: s.count, state: s.state, seq: s.seq, reconnects: s.reconnects, ...(s.latencyMs !== undefined ? { latencyMs: s.latencyMs } : {}) })),
        ...(cluster ? { cluster } : {}),
        role: bot.config.role,
        ...(bot.stream ? { stream: bot.stream } : {}),
        plugins,
        simulator: bot.config.endpoint.kind === 'simulator',
      };
    });
    return { version: VERSION, startedAt: this.#source.startedAt, bots };
  }
}
