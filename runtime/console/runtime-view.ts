/**
 * What the web console (and `/metrics` shard gauges) read from a running runtime. The runtime
 * implements it; the console only reads snapshots and listens to `live` entries.
 */
import type { EventEmitter } from 'node:events';
import type { BotRole } from '../config/types.ts';
import type { ClusterView } from '../sessions/session-manager.ts';
import type { StreamView } from '../streams/stream-stats.ts';

export interface ShardView {
  id: number;
  count: number;
  state: string;
  seq: number;
  latencyMs?: number;
  reconnects: number;
}

export interface PluginView {
  name: string;
  version: number;
  status: 'running' | 'restarting' | 'quarantined' | 'stopped' | 'failed';
  events: number;
  errors: number;
  cpuMs: number;
  heapUsedBytes: number;
  restarts: number;
  /** events waiting in the plugin's backlog, and their size */
  queued: number;
  queuedBytes: number;
  /** events the plugin did not handle, by reason */
  dropped: Record<string, number>;
  /** replies and sends that did not go out, by error code */
  sendFailures: Record<string, number>;
  lastError?: string;
  /** a plugin folder (the operator's code) or an installed npm package */
  source: 'folder' | 'npm';
  /** what an npm plugin asks for that the operator has not granted, and the command that grants it */
  pending?: string[];
  approve?: string;
}

export interface BotView {
  name: string;
  appId: string;
  state: 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';
  error?: string;
  transport: 'websocket' | 'webhook';
  intents: string[];
  /** shards running in this process */
  shards: ShardView[];
  /** Redis sessions only */
  cluster?: ClusterView;
  /** gateway: holds the shards and publishes to the Stream; worker: runs the plugins from it; all: both */
  role: BotRole;
  /** gateway and worker roles: the Stream's length, lag, dead letters and pending entries per consumer */
  stream?: StreamView;
  plugins: PluginView[];
  /** true when the bot talks to the embedded simulator: the console offers its chat pane */
  simulator: boolean;
}

export interface LiveEntry {
  at: number;
  bot?: string;
  kind: 'event' | 'reply' | 'reload' | 'error' | 'state' | 'log';
  text: string;
}

export interface ChatInput {
  bot: string;
  kind: 'guild_at' | 'guild' | 'direct' | 'group_at' | 'c2c';
  content: string;
  user?: { id: string; username: string };
}

export interface ChatMessage {
  n: number;
  bot: string;
  /** 'user' for what a person sent through the simulator, 'bot' for what the bot posted */
  from: 'user' | 'bot';
  kind: string;
  content: string;
  at: number;
}

export interface RuntimeViewEvents {
  live: [entry: LiveEntry];
  chat: [message: ChatMessage];
}

export interface RuntimeView extends EventEmitter<RuntimeViewEvents> {
  snapshot(): { version: string; startedAt: number; bots: BotView[] };
  /** present when any bot uses the embedded simulator */
  chat?: {
    send(input: ChatInput): Promise<{ id: string }>;
    history(since?: number): ChatMessage[];
  };
}
