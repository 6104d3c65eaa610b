import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/** Field names whose values are credentials wherever they appear in a log object. */
const REDACT_PATHS = [
  'secret', 'token', 'clientSecret', 'access_token', 'authorization', 'Authorization',
  '*.secret', '*.token', '*.clientSecret', '*.access_token', '*.authorization', '*.Authorization',
  'headers.authorization', 'headers.Authorization', 'd.token',
];

export interface LoggerOptions {
  level?: string;
  /** pretty (human) output; default: when stdout is a TTY */
  pretty?: boolean;
  /** write here instead of stdout (tests capture lines to assert on them) */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.QQBOT_LOG_LEVEL ?? 'info';
  const base = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: undefined };
  if (options.destination) return pino(base, options.destination);
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  if (pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' } } });
  }
  return pino(base);
}

/** A logger that drops everything: for library use where the caller passes none. */
export const silentLogger: Logger = pino({ level: 'silent' });
