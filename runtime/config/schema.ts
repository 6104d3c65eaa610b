/**
 * JSON Schema of bot.yaml (after `${VAR}` interpolation). `x-expected` is the phrase an error
 * shows when a value does not fit, so messages read "expected production | sandbox | …".
 */
import { BOT_ROLES } from './types.ts';

const port = { type: 'integer', minimum: 0, maximum: 65535, 'x-expected': 'a port number 0-65535' };
const host = { type: 'string', minLength: 1, 'x-expected': 'a host name or address' };
const url = { type: 'string', pattern: '^https?://[^\\s]+$', 'x-expected': 'an http(s) URL' };

const bot = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'appId'],
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$', 'x-expected': 'a name of letters, digits, _ . -' },
    appId: { type: ['string', 'integer'], pattern: '^[0-9]+$', 'x-expected': 'a numeric AppID (quote it)' },
    sameAppAs: { type: 'string', minLength: 1, 'x-expected': 'the name of an earlier bot with the same appId' },
    secret: { type: 'string', minLength: 1, 'x-expected': 'the AppSecret' },
    token: { type: 'string', minLength: 1, 'x-expected': 'the legacy bot token' },
    endpoint: {
      type: 'string',
      pattern: '^(production|sandbox|simulator|https?://[^\\s]+)$',
      'x-expected': 'production | sandbox | simulator | URL',
    },
    tokenEndpoint: url,
    transport: {
      'x-expected': 'websocket | { webhook: { port, path } }',
      oneOf: [
        { const: 'websocket' },
        {
          type: 'object',
          additionalProperties: false,
          required: ['webhook'],
          properties: {
            webhook: {
              type: 'object',
              additionalProperties: false,
              required: ['port'],
              properties: {
                port,
                path: { type: 'string', pattern: '^/', 'x-expected': 'a path starting with /' },
                host,
                maxSkewSec: { type: 'integer', minimum: 1, 'x-expected': 'seconds (integer ≥ 1)' },
              },
            },
          },
        },
      ],
    },
    shards: {
      'x-expected': 'auto | a shard count ≥ 1',
      oneOf: [{ const: 'auto' }, { type: 'integer', minimum: 1 }],
    },
    sessions: {
      'x-expected': 'local | { redis: redis://host:port, leaseTtlMs? }',
      oneOf: [
        { const: 'local' },
        {
          type: 'object',
          additionalProperties: false,
          required: ['redis'],
          properties: {
            redis: { type: 'string', pattern: '^rediss?://' },
            leaseTtlMs: { type: 'integer', minimum: 500, maximum: 600_000, 'x-expected': 'milliseconds (integer 500–600000)' },
          },
        },
      ],
    },
    role: { enum: [...BOT_ROLES], 'x-expected': BOT_ROLES.join(' | ') },
    stream: {
      type: 'object',
      additionalProperties: false,
      'x-expected': '{ redis?, maxLen?, group?, claimIdleMs?, maxDeliveries?, bufferBytes? }',
      properties: {
        redis: { type: 'string', pattern: '^rediss?://', 'x-expected': 'a redis:// URL' },
        maxLen: { type: 'integer', minimum: 100, 'x-expected': 'entries (integer ≥ 100)' },
        group: { type: 'string', pattern: '^[A-Za-z0-9_.:-]+$', 'x-expected': 'a group name of letters, digits, _ . : -' },
        claimIdleMs: { type: 'integer', minimum: 100, maximum: 3_600_000, 'x-expected': 'milliseconds (integer 100–3600000)' },
        maxDeliveries: { type: 'integer', minimum: 1, maximum: 1000, 'x-expected': 'deliveries (integer 1–1000)' },
        bufferBytes: { type: 'integer', minimum: 1024, maximum: 4_294_967_296, 'x-expected': 'bytes (integer 1024–4294967296)' },
      },
    },
    identifyWindowMs: { type: 'integer', minimum: 100, maximum: 60_000, 'x-expected': 'milliseconds (integer 100–60000)' },
    storage: {
      'x-expected': 'file | { redis: redis://host:port }',
      oneOf: [
        { const: 'file' },
        {
          type: 'object',
          additionalProperties: false,
          required: ['redis'],
          properties: { redis: { type: 'string', pattern: '^rediss?://' } },
        },
      ],
    },
    intents: {
      type: 'array',
      items: { type: ['string', 'integer'], 'x-expected': 'an intent name or bit value' },
      'x-expected': 'a list of intent names or bit values',
    },
    plugins: {
      type: ['object', 'null'],
      'x-expected': 'a map of plugin name → config',
      additionalProperties: { type: ['object', 'null', 'boolean'], 'x-expected': 'the plugin config (a map), true, or null' },
    },
    fetchHosts: { type: 'array', items: { type: 'string', minLength: 1 }, 'x-expected': 'a list of host names' },
    requestTimeoutMs: { type: 'integer', minimum: 100, 'x-expected': 'milliseconds (integer ≥ 100)' },
    pluginQueueBytes: { type: 'integer', minimum: 65536, maximum: 536870912, 'x-expected': 'bytes (integer from 65536 to 536870912)' },
  },
};

export const botYamlSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['bots'],
  properties: {
    whenNoBotRuns: { enum: ['exit', 'stay'], 'x-expected': 'exit (the default: exit 1 when no bot is running) | stay' },
    pluginsDir: { type: 'string', minLength: 1, 'x-expected': 'a folder path' },
    dataDir: { type: 'string', minLength: 1, 'x-expected': 'a folder path' },
    console: {
      type: 'object',
      additionalProperties: false,
      required: ['port'],
      properties: { port, host, token: { type: 'string', minLength: 8, 'x-expected': 'a token of at least 8 characters' } },
    },
    metrics: { type: 'object', additionalProperties: false, required: ['port'], properties: { port, host } },
    fetch: {
      type: 'object',
      additionalProperties: false,
      properties: {
        allowPrivateAddresses: { type: 'boolean', 'x-expected': 'true or false: may ctx.fetch reach loopback/private addresses' },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      properties: { level: { enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], 'x-expected': 'trace | debug | info | warn | error | fatal | silent' } },
    },
    bots: { type: 'array', minItems: 1, items: bot, 'x-expected': 'a list of at least one bot' },
  },
} as const;
