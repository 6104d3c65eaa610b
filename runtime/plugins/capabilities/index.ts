/**
 * The main-process side of every capability a plugin calls: assembles the permission checks, rate
 * limits, API proxy, reply router, storage and fetch into one `CapabilityHandler` for the sandbox
 * host. Grants are registered per instance; nothing a plugin sends can widen them.
 */
import type { Logger } from '../../logging/logger.ts';
import { silentLogger } from '../../logging/logger.ts';
import type { CallResult, CapabilityHandler, PluginInstanceSpec } from '../instance.ts';
import type { KeyValueStore } from '../storage/key-value-store.ts';
import { callApi, permissionFor, type ApiRequester } from './api-proxy.ts';
import { CapabilityError, toFailure } from './capability-error.ts';
import { EventRegistry } from './event-registry.ts';
import { pluginFetch, type FetchPolicy } from './fetch.ts';
import { PluginQuota, type RateLimit } from './plugin-quota.ts';
import { ReplyRouter } from './reply-router.ts';
import { callStorage, DEFAULT_STORAGE_CAPS, type StorageCaps } from './storage.ts';

export type { ApiRequester } from './api-proxy.ts';
export { EventRegistry } from './event-registry.ts';
export type { EventRecord } from './event-registry.ts';
export { CapabilityError } from './capability-error.ts';
export type { RateLimit } from './plugin-quota.ts';
export { DEFAULT_RATE_LIMITS } from './plugin-quota.ts';

/** What one bot lends its plugins. */
export interface BotCapabilities {
  /** the bot's OpenAPI client, narrowed (see ApiRequester) */
  request: ApiRequester;
  /** without a store, ctx.storage fails with E_STORAGE_UNAVAILABLE */
  storage?: KeyValueStore;
  /** operator allow-list for ctx.fetch on this bot; a host must also be in the plugin's manifest */
  fetchHosts?: readonly string[];
}

export interface CapabilityOptions {
  bots: Record<string, BotCapabilities>;
  events?: EventRegistry;
  /** bucket (permission name) → limit; merged over DEFAULT_RATE_LIMITS */
  rateLimits?: Record<string, RateLimit>;
  storageCaps?: Partial<StorageCaps>;
  /** ctx.fetch bounds; `allowPrivateAddresses` is the operator's escape hatch for local setups and tests */
  fetch?: Partial<Pick<FetchPolicy, 'maxResponseBytes' | 'timeoutMs' | 'maxRedirects' | 'lookup' | 'allowPrivateAddresses'>>;
  logger?: Logger;
  /** a reply or send a plugin asked for did not go out (`code`: the error code it got) */
  onSendFailed?: (failure: { bot: string; plugin: string; capability: string; code: string; message: string }) => void;
}

export interface InstanceGrant {
  id: string;
  plugin: string;
  bot: string;
  permissions: ReadonlySet<string>;
  /** manifest fetchHosts (as granted) */
  fetchHosts: readonly string[];
  /** asked for by the manifest, not (yet) granted by the operator, and how to grant them */
  pending?: { permissions: readonly string[]; approve: string };
}

/** What an instance may use: its spec's permissions, plus the operator's grants for npm plugins. */
export interface InstanceGrants {
  fetchHosts?: readonly string[];
  pending?: { permissions: readonly string[]; approve: string };
}

export interface PluginCapabilities {
  /** hand this to the sandbox supervisor */
  handle: CapabilityHandler;
  /** the dispatcher registers each incoming event here and passes the ref in SandboxEvent.ref */
  events: EventRegistry;
  registerInstance(spec: Pick<PluginInstanceSpec, 'id' | 'plugin' | 'bot' | 'permissions'>, grants?: InstanceGrants): void;
  unregisterInstance(id: string): void;
  /** call when every plugin is done with the event: acks an INTERACTION_CREATE no plugin acked */
  finishEvent(ref: string): Promise<void>;
}

export function createCapabilityHandler(options: CapabilityOptions): PluginCapabilities {
  const logger = options.logger ?? silentLogger;
  const events = options.events ?? new EventRegistry();
  const router = new ReplyRouter(events);
  const quota = new PluginQuota(options.rateLimits);
  const storageCaps = { ...DEFAULT_STORAGE_CAPS, ...options.storageCaps };
  const fetchDefaults = { maxResponseBytes: 1024 * 1024, timeoutMs: 10_000, maxRedirects: 3, ...options.fetch };
  const instances = new Map<string, InstanceGrant>();

  const demand = (grant: InstanceGrant, permission: string, what: string): void => {
    if (grant.permissions.has(permission)) return;
    if (grant.pending?.permissions.includes(permission)) {
      throw new CapabilityError('E_PERMISSION', `plugin "${grant.plugin}" asks for permission "${permission}" (${what}), which the operator has not granted; to grant it: ${grant.pending.approve}`, { permission, pending: true });
    }
    throw new CapabilityError('E_PERMISSION', `plugin "${grant.plugin}" lacks permission "${permission}" for ${what}`, { permission });
  };
  const throttle = (grant: InstanceGrant, bucket: string, what: string): void => {
    const wait = quota.take(grant.id, bucket);
    if (wait > 0) {
      throw new CapabilityError('E_RATE_LIMITED', `plugin "${grant.plugin}" is over its rate limit for ${what}; retry in ${wait} ms`, { retryAfterMs: wait });
    }
  };

  async function serve(grant: InstanceGrant, bot: BotCapabilities, capability: string, payload: unknown): Promise<unknown> {
    if (capability.startsWith('api.')) {
      const method = capability.slice(4);
      const permission = permissionFor(method);
      if (permission === undefined) throw new CapabilityError('E_UNKNOWN_CAPABILITY', `api.${method.slice(0, 64)} does not exist`);
      demand(grant, permission, capability);
      // A passive reply is bounded by the events the bot gets and the platform's rules per message;
      // the per-plugin budget is for what is not (proactive sends, reads, management).
      return callApi(bot.request, method, payload, (body, what) => router.reserveDirect(grant.bot, grant.id, body, what), () => throttle(grant, permission, capability));
    }
    const p = (typeof payload === 'object' && payload !== null ? payload : {}) as Record<string, unknown>;
    switch (capability) {
      case 'reply':
        demand(grant, 'messages.send', 'event.reply');
        return router.reply(grant.bot, grant.id, bot.request, p.ref, p.body);
      case 'ack':
        // one per interaction (E_ALREADY_ACKED after that): bounded by the events themselves
        await router.ack(grant.bot, bot.request, p.ref, p.code);
        return null;
      case 'fetch':
        demand(grant, 'net.fetch', 'ctx.fetch');
        throttle(grant, 'net.fetch', 'ctx.fetch');
        return pluginFetch({ ...fetchDefaults, hosts: grant.fetchHosts, operatorHosts: bot.fetchHosts }, payload);
      case 'storage.get':
      case 'storage.set':
      case 'storage.delete':
      case 'storage.keys': {
        demand(grant, 'storage', `ctx.${capability}`);
        throttle(grant, 'storage', `ctx.${capability}`);
        if (!bot.storage) throw new CapabilityError('E_STORAGE_UNAVAILABLE', `no storage is configured for bot "${grant.bot}"`);
        return callStorage(bot.storage, { bot: grant.bot, plugin: grant.plugin }, capability.slice(8), payload, storageCaps);
      }
      default:
        throw new CapabilityError('E_UNKNOWN_CAPABILITY', `capability "${capability.slice(0, 64)}" does not exist`);
    }
  }

  const handle: CapabilityHandler = async (instanceId, capability, payload): Promise<CallResult> => {
    const grant = instances.get(instanceId);
    if (!grant) return { ok: false, error: { code: 'E_UNKNOWN_INSTANCE', message: `plugin instance "${instanceId}" is not registered` } };
    const bot = options.bots[grant.bot];
    if (!bot) return { ok: false, error: { code: 'E_INTERNAL', message: `bot "${grant.bot}" is not available` } };
    try {
      return { ok: true, value: await serve(grant, bot, String(capability), payload) };
    } catch (error) {
      const result = toFailure(error, String(capability).slice(0, 64));
      if (!result.ok && result.error.code === 'E_INTERNAL') {
        logger.error({ plugin: grant.id, capability, err: error }, 'capability failed inside the host');
      }
      if (!result.ok && isSend(capability)) {
        const reason = typeof result.error.platformCode === 'number' ? `${result.error.code}_${result.error.platformCode}` : result.error.code;
        options.onSendFailed?.({ bot: grant.bot, plugin: grant.plugin, capability, code: reason, message: result.error.message });
      }
      return result;
    }
  };

  return {
    handle,
    events,
    registerInstance(spec, grants = {}) {
      instances.set(spec.id, {
        id: spec.id,
        plugin: spec.plugin,
        bot: spec.bot.name,
        permissions: new Set(spec.permissions),
        fetchHosts: grants.fetchHosts ?? [],
        ...(grants.pending && grants.pending.permissions.length > 0 ? { pending: grants.pending } : {}),
      });
    },
    unregisterInstance(id) {
      instances.delete(id);
      quota.forget(id);
    },
    async finishEvent(ref) {
      try {
        await router.finish(ref, (name) => options.bots[name]?.request);
      } catch (error) {
        logger.warn({ ref, err: toFailure(error, 'interaction ack') }, 'could not acknowledge interaction');
      }
    },
  };
}

/** Capabilities that put a message in front of users. */
function isSend(capability: string): boolean {
  return capability === 'reply' || capability.startsWith('api.send');
}
