import { QQBotError, type ErrorCode } from '../errors.ts';

/** A bot.yaml problem; the message starts with `file:line:col: field.path:` so editors can jump to it. */
export class ConfigError extends QQBotError {
  readonly file: string;
  readonly line?: number;
  readonly col?: number;
  readonly field?: string;

  constructor(code: ErrorCode, detail: string, where: { file: string; line?: number; col?: number; field?: string }) {
    const position = where.line === undefined ? where.file : `${where.file}:${where.line}:${where.col ?? 1}`;
    super(code, `${position}: ${where.field ? `${where.field}: ` : ''}${detail}`, { ...where });
    this.file = where.file;
    this.line = where.line;
    this.col = where.col;
    this.field = where.field;
  }
}
