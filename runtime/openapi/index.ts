export { OpenAPIClient, type OpenAPIClientOptions } from './client.ts';
export { resolveEndpoints, type Endpoints } from './endpoints.ts';
export { OpenAPIError, TokenError, type OpenAPIErrorCode } from './errors.ts';
export {
  AccessTokenSource, LegacyTokenSource, DEFAULT_TOKEN_ENDPOINT,
  type AccessTokenSourceOptions, type CachedToken, type TokenShare, type TokenSource,
} from './token-source.ts';
export type {
  AuditAccepted, HttpMethod, QueryValue, RateLimitedEvent, RequestErrorEvent, RequestOptions, ResponseEvent, RestEvents,
} from './rest.ts';
export { routeKey, routeTemplate } from './route-queues.ts';
export type * from './types.ts';
