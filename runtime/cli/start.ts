import { loadConfig } from '../config/index.ts';
import { createLogger } from '../logging/logger.ts';
import { Runtime } from '../runtime.ts';
import { waitForShutdownSignal } from './signals.ts';

export async function startCommand(args: string[]): Promise<number> {
  const file = args[0] ?? 'bot.yaml';
  const config = loadConfig(file);
  const logger = createLogger({ level: config.log.level });
  const runtime = new Runtime({ config, logger });
  const stopping = waitForShutdownSignal();
  const started = runtime.start();
  started.catch(() => undefined); // awaited below; a rejection after a signal is not "unhandled"
  // a signal during start-up (e.g. a gateway that never answers) stops at once rather than after
  if ((await Promise.race([started.then(() => 'started' as const), stopping.then(() => 'signal' as const)])) === 'signal') {
    logger.info('shutting down during start-up');
    await runtime.stop();
    logger.flush();
    return 0;
  }

  const failed = [...runtime.bots.values()].filter((bot) => bot.state === 'failed');
  const lines = [`qqbot: ${runtime.bots.size - failed.length}/${runtime.bots.size} bots running`];
  for (const bot of failed) lines.push(`  bot ${bot.config.name} failed: ${bot.error?.message ?? 'unknown error'}`);
  for (const bot of runtime.bots.values()) {
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

  const signal = await stopping;
  logger.info({ signal }, 'shutting down: finishing handlers, closing shards resumably');
  const { unfinished, received, handled } = await runtime.stop();
  logger.info({ received, handled, unfinished }, 'stopped');
  logger.flush();
  return 0;
}
