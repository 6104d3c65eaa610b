import { QQBotError } from '../errors.ts';

/** The metrics endpoint could not listen (port taken, host not local to this machine). */
export class MetricsServerError extends QQBotError {}
