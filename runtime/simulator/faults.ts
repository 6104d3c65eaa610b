import { ControlInputError } from './errors.ts';

/** Faults the control API can inject. `shard`/`appId` narrow a gateway fault; default: every connection. */
export type FaultInput =
  | { kind: 'close'; code: number; shard?: number; appId?: string }
  | { kind: 'reconnect'; shard?: number; appId?: string }
  | { kind: 'invalid_session'; resumable: boolean; shard?: number; appId?: string }
  | { kind: 'stop_acks'; shard?: number; appId?: string }
  | { kind: 'drop'; shard?: number; appId?: string }
  /** the next `count` calls to `route` (e.g. `POST /channels/{channel_id}/messages`) answer 429 */
  | { kind: 'rate_limit'; route: string; count: number; retryAfterSec?: number; appId?: string };

export type GatewayFault = Exclude<FaultInput, { kind: 'rate_limit' }>;

const KINDS = ['close', 'reconnect', 'invalid_session', 'stop_acks', 'drop', 'rate_limit'] as const;

/** Validates untrusted JSON into a FaultInput; errors name the field at fault. */
export function parseFault(input: unknown, knownRoute: (route: string) => boolean): FaultInput {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ControlInputError('body', 'expected a JSON object');
  const o = input as Record<string, unknown>;
  if (typeof o.kind !== 'string' || !(KINDS as readonly string[]).includes(o.kind)) throw new ControlInputError('kind', `kind must be one of ${KINDS.join(', ')}`);
  const scope: { shard?: number; appId?: string } = {};
  if (o.shard !== undefined) {
    if (typeof o.shard !== 'number' || !Number.isInteger(o.shard) || o.shard < 0) throw new ControlInputError('shard', 'shard must be a non-negative integer');
    scope.shard = o.shard;
  }
  if (o.appId !== undefined) {
    if (typeof o.appId !== 'string' || !o.appId) throw new ControlInputError('appId', 'appId must be a non-empty string');
    scope.appId = o.appId;
  }
  switch (o.kind) {
    case 'close': {
      const code = o.code;
      // 1000 and 3000–4999 are the codes an endpoint may send in a close frame (RFC 6455 §7.4)
      if (typeof code !== 'number' || !Number.isInteger(code) || !(code === 1000 || (code >= 3000 && code <= 4999))) {
        throw new ControlInputError('code', 'code must be 1000 or an integer in 3000–4999');
      }
      return { kind: 'close', code, ...scope };
    }
    case 'invalid_session':
      if (typeof o.resumable !== 'boolean') throw new ControlInputError('resumable', 'resumable must be a boolean');
      return { kind: 'invalid_session', resumable: o.resumable, ...scope };
    case 'rate_limit': {
      if (typeof o.route !== 'string' || !knownRoute(o.route)) throw new ControlInputError('route', 'route must name an OpenAPI route, e.g. "POST /channels/{channel_id}/messages"');
      if (typeof o.count !== 'number' || !Number.isInteger(o.count) || o.count < 1) throw new ControlInputError('count', 'count must be a positive integer');
      let retryAfterSec: number | undefined;
      if (o.retryAfterSec !== undefined) {
        if (typeof o.retryAfterSec !== 'number' || !(o.retryAfterSec > 0)) throw new ControlInputError('retryAfterSec', 'retryAfterSec must be a positive number');
        retryAfterSec = o.retryAfterSec;
      }
      const fault: FaultInput = { kind: 'rate_limit', route: o.route, count: o.count };
      if (retryAfterSec !== undefined) fault.retryAfterSec = retryAfterSec;
      if (scope.appId !== undefined) fault.appId = scope.appId;
      return fault;
    }
    default:
      return { kind: o.kind as 'reconnect' | 'stop_acks' | 'drop', ...scope };
  }
}
