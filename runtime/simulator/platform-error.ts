/**
 * Errors as the platform answers them (docs/protocol.md §15): HTTP status plus
 * `{code, message, err_code?, trace_id}`; the trace id also goes into `X-Tps-trace-ID`.
 */
export class PlatformError extends Error {
  readonly status: number;
  readonly code: number;
  readonly errCode: number | undefined;
  readonly headers: Record<string, string>;

  constructor(status: number, code: number, message: string, options: { errCode?: number; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = 'PlatformError';
    this.status = status;
    this.code = code;
    this.errCode = options.errCode;
    this.headers = options.headers ?? {};
  }

  body(traceId: string): Record<string, unknown> {
    const body: Record<string, unknown> = { code: this.code, message: this.message };
    if (this.errCode !== undefined) body.err_code = this.errCode;
    body.trace_id = traceId;
    return body;
  }
}

/**
 * Codes the simulator answers with. Documented codes come from §15.4; the ones marked
 * "simulator's choice" have no documented value, so tests should match on them only here.
 */
export const CODES = {
  tokenMissing: 11241,
  tokenCheckFailed: 11243,
  tokenExpired: 11244,
  apiNotGranted: 11253,
  emptyMessage: 50006,
  markdownCombination: 50037,
  replyMsgIdWrong: 304026,
  /** §15.4 proactive quotas; meanings from the docs' error table */
  proactiveChannelLimit: 304045,
  proactiveChannelNotAllowed: 304046,
  proactiveChannelCountLimit: 304047,
  proactiveGuildNotAllowed: 304048,
  proactiveDmLimit: 304049,
  proactiveDmTotalLimit: 304050,
  /** group/C2C proactive send refused since proactive push was switched off (third-party reports) */
  proactiveNoPermission: 40034102,
  replyWindowExpired: 304027,
  duplicateMsgSeq: 40054005,
  /** simulator's choice: §14 allows 5 replies per msg_id, no code is documented */
  replyLimitReached: 40054010,
  recallWindowPassed: 306011,
  /** simulator's choice for "no such message" on recall */
  recallNotFound: 306004,
  channelRateLimited: 20028,
  /** group/C2C "msg limit exceed": the send page's answer for rate and quota alike */
  sendRateLimited: 22009,
  /** simulator's choice for malformed parameters */
  invalidParameter: 40034001,
  /** simulator's choice for unknown guild/channel/group/user ids */
  notFound: 50001,
  noSuchApi: 404,
  methodNotAllowed: 405,
  wrongCredentials: 100016,
} as const;
