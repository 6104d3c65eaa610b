import type { ErrorCode } from './codes.ts';

/**
 * Base class of every error the runtime raises on purpose. `code` is stable and registered in
 * codes.ts (tests, docs and users match on it); `context` carries what a user needs to act (file,
 * field, plugin, route). Never put a credential into either.
 */
export class QQBotError extends Error {
  readonly code: ErrorCode;
  readonly context: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}
