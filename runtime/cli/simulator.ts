import { parseArgs } from 'node:util';
import { createLogger } from '../logging/logger.ts';
import { parseBotFlag, startSimulator } from '../simulator/index.ts';
import { waitForShutdownSignal } from './signals.ts';

export async function simulatorCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string', default: '8081' },
      host: { type: 'string', default: '127.0.0.1' },
      bot: { type: 'string', multiple: true },
      'allow-host': { type: 'string', multiple: true },
      proactive: { type: 'string', default: 'off' },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: expected a port number, got "${values.port}"`);
  const bots = (values.bot ?? []).map(parseBotFlag);
  const proactive = values.proactive;
  if (proactive !== 'off' && proactive !== 'quota' && proactive !== 'allowed') throw new Error(`--proactive: expected off | quota | allowed, got "${proactive}"`);
  const simulator = await startSimulator({ port, host: values.host, allowedHosts: values['allow-host'] ?? [], proactive, logger: createLogger(), ...(bots.length > 0 ? { bots } : {}) });
  process.stdout.write(`simulator listening: OpenAPI ${simulator.url}  gateway ${simulator.gatewayUrl}  control ${simulator.url}/_simulator/\n`);
  await waitForShutdownSignal();
  await simulator.close();
  return 0;
}
