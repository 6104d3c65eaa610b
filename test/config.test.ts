import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { ConfigError, loadConfig } from '../runtime/config/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'qqbot-config-'));
function write(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

function failure(file: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    loadConfig(file, { env });
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail('config loaded but should not have');
}

test('the default bot.yaml loads: one simulator bot with credentials it needs none of', () => {
  const config = loadConfig(new URL('../bot.yaml', import.meta.url).pathname, { env: {} });
  assert.equal(config.bots.length, 1);
  const bot = config.bots[0]!;
  assert.equal(bot.endpoint.kind, 'simulator');
  assert.equal(bot.secret?.reveal(), 'simulator-secret');
  assert.equal(config.console?.port, 8080);
  assert.equal(bot.plugins, undefined, 'every plugin folder runs');
});

test('env interpolation: ${VAR}, ${VAR:-default}, numbers coerced where the schema wants them', () => {
  const file = write('env.yaml', [
    'console: { port: "${PORT:-8081}" }',
    'bots:',
    '  - name: prod',
    '    appId: "${APP_ID}"',
    '    secret: ${SECRET}',
    '    endpoint: sandbox',
    '    transport: { webhook: { port: 8443, path: /cb } }',
    '    shards: 4',
    '    sessions: { redis: "redis://127.0.0.1:6380" }',
    '    intents: [GUILD_MESSAGES]',
  ].join('\n'));
  const config = loadConfig(file, { env: { APP_ID: '102', SECRET: 's3cr3t-value' } });
  const bot = config.bots[0]!;
  assert.equal(config.console?.port, 8081);
  assert.equal(bot.appId, '102');
  assert.equal(bot.secret?.reveal(), 's3cr3t-value');
  assert.deepEqual(bot.transport, { kind: 'webhook', port: 8443, path: '/cb', host: '0.0.0.0', maxSkewSec: 300 });
  assert.deepEqual(bot.sessions, { kind: 'redis', url: 'redis://127.0.0.1:6380', leaseTtlMs: 10_000 });
  assert.equal(bot.shards, 4);
  // the secret cannot leak through logging or JSON
  assert.ok(!JSON.stringify(config).includes('s3cr3t-value'));
  assert.ok(!inspect(config, { depth: 10 }).includes('s3cr3t-value'));
  assert.ok(!String(bot.secret).includes('s3cr3t-value'));
});

test('a YAML syntax error names file:line:col', () => {
  const error = failure(write('syntax.yaml', 'bots:\n  - name: a\n   appId: 1\n'));
  assert.equal(error.code, 'E_CONFIG_SYNTAX');
  assert.match(error.message, /syntax\.yaml:3:\d+: /);
});

test('a schema error names file:line:col and the field path with what was expected', () => {
  const error = failure(write('schema.yaml', 'bots:\n  - name: a\n    appId: "1"\n    secret: x\n  - name: b\n    appId: "2"\n    secret: y\n    endpoint: ftp://nowhere\n'));
  assert.equal(error.code, 'E_CONFIG_SCHEMA');
  assert.equal(error.message, `${error.file}:8:15: bots[1].endpoint: expected production | sandbox | simulator | URL`);
  assert.equal(error.field, 'bots[1].endpoint');
});

test('an unset variable names the line and field, and the variable', () => {
  const error = failure(write('unset.yaml', 'bots:\n  - name: a\n    appId: "1"\n    secret: ${QQBOT_TEST_UNSET}\n'));
  assert.equal(error.code, 'E_CONFIG_ENV');
  assert.match(error.message, /unset\.yaml:4:13: bots\[0\]\.secret: environment variable QQBOT_TEST_UNSET is not set/);
});

test('unknown keys, duplicate names, missing credentials and nested type errors are each named', () => {
  const unknown = failure(write('unknown.yaml', 'bots:\n  - name: a\n    appId: "1"\n    secret: x\n    colour: red\n'));
  assert.match(unknown.message, /unknown\.yaml:5:5: bots\[0\]\.colour: unknown key "colour"/);

  const duplicate = failure(write('dup.yaml', 'bots:\n  - name: a\n    appId: "1"\n    secret: s\n  - name: a\n    appId: "2"\n    secret: s\n'));
  assert.equal(duplicate.code, 'E_CONFIG_DUPLICATE_BOT');
  assert.match(duplicate.message, /dup\.yaml:5:11: bots\[1\]\.name: duplicate bot name "a"/);

  const missing = failure(write('cred.yaml', 'bots:\n  - name: a\n    appId: "1"\n'));
  assert.equal(missing.code, 'E_CONFIG_CREDENTIALS');
  assert.match(missing.message, /cred\.yaml:2:5: bots\[0\]: missing credential/);

  const nested = failure(write('wh.yaml', 'bots:\n  - name: a\n    appId: "1"\n    secret: s\n    transport: {webhook: {port: x}}\n'));
  assert.match(nested.message, /wh\.yaml:5:\d+: bots\[0\]\.transport\.webhook\.port: expected a port number/);

  const noBots = failure(write('nobots.yaml', 'pluginsDir: ./p\n'));
  assert.match(noBots.message, /nobots\.yaml:1:1: bots: missing required key "bots"|nobots\.yaml:1:1: \(top level\): missing required key "bots"/);
});

test('sessions: redis takes a lease TTL; a TTL or identify window out of range is named with its place', () => {
  const config = loadConfig(write('lease.yaml', 'bots:\n  - name: a\n    appId: "1"\n    secret: s\n    sessions: { redis: "redis://h:6379", leaseTtlMs: 3000 }\n    identifyWindowMs: 500\n'));
  assert.deepEqual(config.bots[0]!.sessions, { kind: 'redis', url: 'redis://h:6379', leaseTtlMs: 3000 });
  assert.equal(config.bots[0]!.identifyWindowMs, 500);
  const short = failure(write('short.yaml', 'bots:\n  - name: a\n    appId: "1"\n    secret: s\n    sessions: { redis: "redis://h:6379", leaseTtlMs: 10 }\n'));
  assert.match(short.message, /short\.yaml:5:\d+: bots\[0\]\.sessions(\.leaseTtlMs)?: expected/);
  const window = failure(write('window.yaml', 'bots:\n  - name: a\n    appId: "1"\n    secret: s\n    identifyWindowMs: 5\n'));
  assert.match(window.message, /window\.yaml:5:\d+: bots\[0\]\.identifyWindowMs: expected milliseconds \(integer 100–60000\)/);
});

test('a missing file is a clear error', () => {
  const error = failure(join(dir, 'absent.yaml'));
  assert.equal(error.code, 'E_CONFIG_READ');
  assert.match(error.message, /absent\.yaml: cannot read: ENOENT/);
});
