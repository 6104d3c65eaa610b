/** A bot the simulator knows: its credentials, and what it may not subscribe to. */
import { SimulatorConfigError } from './errors.ts';

export interface SimulatorBot {
  appId: string;
  secret: string;
  /** legacy fixed token for `Bot {appId}.{token}` auth; without it only access tokens work */
  token?: string;
  /** intent bits this bot is not entitled to: identifying with any of them closes with 4014 */
  deniedIntents?: number;
  username?: string;
}

export const DEFAULT_BOT: Readonly<Required<Pick<SimulatorBot, 'appId' | 'secret' | 'token'>>> = Object.freeze({
  appId: '1020000001',
  secret: 'simulator-secret',
  token: 'simulator-token',
});

/**
 * Parses the CLI's `--bot appId:secret[:token]`. The error never repeats the flag's value,
 * because it carries a secret.
 */
export function parseBotFlag(s: string): SimulatorBot {
  const parts = s.split(':');
  const [appId, secret, token] = parts;
  if (parts.length < 2 || parts.length > 3 || !appId || !secret || (parts.length === 3 && !token)) {
    throw new SimulatorConfigError('--bot expects appId:secret or appId:secret:token (none of them empty, no extra ":")', { appId: appId || undefined });
  }
  if (!/^[0-9A-Za-z_-]+$/.test(appId)) throw new SimulatorConfigError('--bot appId may only contain letters, digits, "_" and "-"', { appId });
  return token ? { appId, secret, token } : { appId, secret };
}
