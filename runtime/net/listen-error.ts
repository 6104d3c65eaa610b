import { ConfigError } from '../config/config-error.ts';

const WHY: Record<string, string> = {
  EADDRINUSE: 'another process is listening there',
  EACCES: 'ports below 1024 need privileges',
  EADDRNOTAVAIL: 'that address is not one of this machine’s',
  ENOTFOUND: 'the host name does not resolve',
};

/**
 * A listener bot.yaml asks for (console, metrics, a webhook) could not be bound. It stops start-up
 * whole, so the message names the setting to change: `bot.yaml:3:18: console.port: …`.
 */
export class ListenError extends ConfigError {
  constructor(what: string, address: { host: string; port: number }, cause: unknown, where: { file: string; line?: number; col?: number; field: string }) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code ?? (cause as Error | undefined)?.message ?? String(cause);
    const why = WHY[code];
    super('E_LISTEN', `${what} cannot listen on ${address.host}:${address.port}: ${code}${why ? ` (${why})` : ''}`, where);
  }
}
