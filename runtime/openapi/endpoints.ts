import { QQBotError } from '../errors.ts';
import { DEFAULT_TOKEN_ENDPOINT } from './token-source.ts';

export interface Endpoints {
  apiBase: string;
  tokenEndpoint: string;
}

const PRODUCTION_API = 'https://api.sgroup.qq.com';
const SANDBOX_API = 'https://sandbox.api.sgroup.qq.com';

/**
 * Hosts for a bot.yaml `endpoint` (docs/protocol.md §1). The token endpoint is the same for
 * production and sandbox; a custom URL keeps it too (bot.yaml `tokenEndpoint` overrides it).
 * `simulator` is resolved by the runtime, which knows where its simulator listens.
 */
export function resolveEndpoints(endpoint: 'production' | 'sandbox' | (string & {})): Endpoints {
  if (endpoint === 'production') return { apiBase: PRODUCTION_API, tokenEndpoint: DEFAULT_TOKEN_ENDPOINT };
  if (endpoint === 'sandbox') return { apiBase: SANDBOX_API, tokenEndpoint: DEFAULT_TOKEN_ENDPOINT };
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new QQBotError('E_OPENAPI_ENDPOINT', `unknown OpenAPI endpoint "${endpoint}": expected production, sandbox or an http(s) URL`, { endpoint });
  }
  if (url.username || url.password || url.search) {
    throw new QQBotError('E_OPENAPI_ENDPOINT', 'OpenAPI endpoint URL must not carry credentials or a query', { endpoint: url.origin });
  }
  return { apiBase: `${url.origin}${url.pathname.replace(/\/+$/, '')}`, tokenEndpoint: DEFAULT_TOKEN_ENDPOINT };
}
