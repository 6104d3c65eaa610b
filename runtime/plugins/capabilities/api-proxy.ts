/**
 * `ctx.api.<method>`: permission check, argument validation, platform route, then the bot's
 * OpenAPI client. Plugins never name a path; they can only call the methods of API_METHODS.
 */
import { API_METHODS } from 'qqbot-sdk-types';
import { buildApiRequest, isApiMethod, type HttpMethod } from './api-routes.ts';
import { CapabilityError } from './capability-error.ts';
import { auditFromError, toSendResult } from './send-result.ts';

/**
 * The narrow slice of the OpenAPI client the capability layer needs: it resolves with the parsed
 * body and rejects with an error carrying `status` (and `code`/`traceId` when the platform sent them).
 * `(m, p, o) => client.request(m, p, o)` fits.
 */
export type ApiRequester = (
  method: HttpMethod,
  path: string,
  options?: { body?: unknown; query?: Record<string, string | number | boolean> },
) => Promise<unknown>;

export interface ApiGrant {
  plugin: string;
  permissions: ReadonlySet<string>;
}

/** The permission `api.<method>` needs, or undefined for names that are not API methods. */
export function permissionFor(method: string): string | undefined {
  return isApiMethod(method) ? API_METHODS[method] : undefined;
}

export async function callApi(grant: ApiGrant, request: ApiRequester, method: string, args: unknown): Promise<unknown> {
  if (!isApiMethod(method)) throw new CapabilityError('E_UNKNOWN_CAPABILITY', `api.${method.slice(0, 64)} does not exist`);
  const permission = API_METHODS[method];
  if (!grant.permissions.has(permission)) {
    throw new CapabilityError('E_PERMISSION', `plugin "${grant.plugin}" lacks permission "${permission}" for api.${method}`);
  }
  const req = buildApiRequest(method, args);
  const options: { body?: unknown; query?: Record<string, string | number | boolean> } = {};
  if (req.body !== undefined) options.body = req.body;
  if (req.query !== undefined) options.query = req.query;
  const isSend = method.startsWith('send');
  try {
    const response = await request(req.method, req.path, options);
    if (isSend) return toSendResult(response);
    return response ?? null;
  } catch (error) {
    const audit = isSend ? auditFromError(error) : undefined;
    if (audit) return audit;
    throw error;
  }
}
