export { QQBotError } from './errors/qqbot-error.ts';
export { ERROR_CODES, isErrorCode, renderErrorCodes, type ErrorCode } from './errors/codes.ts';
