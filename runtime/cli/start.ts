import { parseArgs } from 'node:util';
import type { Bot } from '../bot/bot.ts';
import { resolve } from 'node:path';
import { BOT_ROLES, type BotRole } from '../config/types.ts';
import { loadConfig, type RuntimeConfig } from '../config/index.ts';
import { QQBotError } from '../errors.ts';
import { createLogger } from '../logging/logger.ts';
import { Runtime } from '../runtime.ts';
import { waitForShutdownSignal } from './signals.ts';

/**
 * Runs bot.yaml until a signal. It fails whole rather than half: a listener that cannot be bound
 * stops start-up (exit 1), and so does having no bot running once start-up is over or later,
 * unless `whenNoBotRuns: stay` or `--stay-up` says to keep serving the console.
 */
export async function startCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      'stay-up': { type: 'boolean', default: false },
      role: { type: 'string' },
      'console-port': { type: 'string' },
      'metrics-port': { type: 'string' },
      'data-dir': { type: 'string' },
    },
  });
  const file = positionals[0] ?? 'bot.yaml';
  const role = values.role;
  if (role !== undefined && !isRole(role)) throw new QQBotError('E_USAGE', `--role takes gateway, worker or all, not "${role}"`);
  const config = withProcessFlags(loadConfig(file, role ? { role } : {}), values);
  const stayUp = values['stay-up'] || config.whenNoBotRuns === 'stay';
  const logger = createLogger({ level: config.log.level });
  const runtime = new Runtime({ config, logger });
  const stopping = waitForShutdownSignal();
  const started = runtime.start().then(() => ({ started: true as const }), (error: unknown) => ({ failed: error }));
  // a signal during start-up (e.g. a gateway that never answers) stops at once rather than after
  const first = await Promise.race([started, stopping.then(() => ({ signal: true as const }))]);
  if ('signal' in first) {
    logger.info('shutting down during start-up');
    await runtime.stop();
    logger.flush();
    return 0;
  }
  if ('failed' in first) {
    logger.error({ err: (first.failed as Error)?.message }, 'start-up failed: stopping what started');
    await runtime.stop();
    logger.flush();
    throw first.failed;
  }

  const bots = [...runtime.bots.values()];
  const failed = bots.filter((bot) => bot.state === 'failed');
  const lines = [`qqbot: ${bots.length - failed.length}/${bots.length} bots running`];
  for (const bot of failed) lines.push(`  bot ${bot.config.name} failed: ${bot.error?.message ?? 'unknown error'}`);
  for (const bot of runtime.bots.values()) {
    if (bot.state !== 'failed' && bot.stream) lines.push(`  bot ${bot.config.name}: ${bot.config.role} of stream ${bot.stream.key} (group ${bot.stream.group})`);
    if (bot.state === 'failed' || !bot.sessions) continue;
    const held = bot.sessions.shards().map((s) => s.id);
    const cluster = bot.sessions.cluster?.();
    const of = cluster?.shardCount ?? bot.sessions.shards()[0]?.count ?? 0;
    const where = cluster ? ` by process ${cluster.processId} (${cluster.processes.filter((p) => !p.stale).length} process(es) share the bot through redis)` : '';
    lines.push(`  bot ${bot.config.name}: shards ${held.length > 0 ? held.join(', ') : 'none yet'} of ${of} held${where}`);
  }
  if (runtime.consoleUrl) lines.push(`  console: ${runtime.consoleUrl}`);
  if (runtime.metricsPort !== undefined) lines.push(`  metrics: http://${config.metrics?.host}:${runtime.metricsPort}/metrics`);
  if (runtime.simulator) lines.push(`  simulator: ${runtime.simulator.url} (send messages from the console's chat pane)`);
  process.stdout.write(`${lines.join('\n')}\n`);

  const noneRunning = stayUp ? new Promise<never>(() => undefined) : whenNoBotRuns(bots);
  const reason = await Promise.race([stopping.then((signal) => ({ signal })), noneRunning.then(() => ({ noBot: true as const }))]);
  if ('noBot' in reason) logger.error('no bot is running: stopping (whenNoBotRuns: stay or --stay-up keeps the process up)');
  else logger.info({ signal: reason.signal }, 'shutting down: finishing handlers, closing shards resumably');
  const { unfinished, received, handled, dropped } = await runtime.stop();
  // dropped: events at least one plugin did not handle (reasons: logged, /metrics qqbot_events_dropped_total)
  logger.info({ received, handled, dropped, unfinished }, 'stopped');
  logger.flush();
  if ('noBot' in reason) throw new NoBotRunningError(bots);
  return 0;
}

function isRole(value: string): value is BotRole {
  return (BOT_ROLES as readonly string[]).includes(value);
}

/**
 * Several processes of one bot.yaml on one machine (a gateway and its workers) each need their own
 * listeners and, for file storage or local sessions, their own data folder: flags override bot.yaml.
 * A port is a number (0: any free port) or `off`.
 */
function withProcessFlags(config: RuntimeConfig, flags: { 'console-port'?: string | undefined; 'metrics-port'?: string | undefined; 'data-dir'?: string | undefined }): RuntimeConfig {
  const port = (flag: string, value: string): number | 'off' => {
    if (value === 'off') return 'off';
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new QQBotError('E_USAGE', `--${flag} takes a port number 0-65535 or off, not "${value}"`);
    return n;
  };
  const next: RuntimeConfig = { ...config };
  const consolePort = flags['console-port'] === undefined ? undefined : port('console-port', flags['console-port']);
  if (consolePort === 'off') delete next.console;
  else if (consolePort !== undefined) next.console = { host: '127.0.0.1', ...config.console, port: consolePort };
  const metricsPort = flags['metrics-port'] === undefined ? undefined : port('metrics-port', flags['metrics-port']);
  if (metricsPort === 'off') delete next.metrics;
  else if (metricsPort !== undefined) next.metrics = { host: '127.0.0.1', ...config.metrics, port: metricsPort };
  if (flags['data-dir'] !== undefined) next.dataDir = resolve(flags['data-dir']);
  return next;
}

/** Resolves once no bot is running or starting: now, or when the last one fails. */
function whenNoBotRuns(bots: Bot[]): Promise<void> {
  const anyAlive = () => bots.some((bot) => bot.state === 'running' || bot.state === 'starting');
  if (!anyAlive()) return Promise.resolve();
  return new Promise((resolve) => {
    for (const bot of bots) {
      bot.on('state', (state) => {
        if (state === 'failed' && !anyAlive()) resolve();
      });
    }
  });
}

/** Exit 1 with every bot's failure at its place in bot.yaml, for the service manager's log. */
class NoBotRunningError extends QQBotError {
  constructor(bots: Bot[]) {
    const failures = bots.map((bot) => {
      const { file, line, col } = bot.config.location;
      return `\n  ${file}:${line}:${col}: bot ${bot.config.name} failed: ${bot.error?.message ?? bot.state}`;
    });
    super('E_NO_BOT_RUNNING', `no bot is running (set whenNoBotRuns: stay in bot.yaml or pass --stay-up to keep the process up anyway):${failures.join('')}`, { bots: bots.map((bot) => bot.config.name) });
  }
}
