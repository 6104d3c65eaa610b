import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { ConfigError, loadConfig } from '../runtime/config/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'qqbot-config-'));
mkdirSync(join(dir, 'plugins'));
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
  assert.deepEqual(bot.transport, { kind: 'webhook', port: 8443, path: '/cb', host: '127.0.0.1', maxSkewSec: 300 }, 'loopback unless a host is set: a TLS proxy fronts it');
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

test('an alias bomb is refused at its first alias, before it is expanded', () => {
  const levels = ['a: &a [x, x, x, x, x, x, x, x, x]'];
  for (const [name, prev] of [['b', 'a'], ['c', 'b'], ['d', 'c'], ['e', 'd'], ['f', 'e'], ['g', 'f']]) {
    levels.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(', ')}]`);
  }
  const error = failure(write('bomb.yaml', `${levels.join('\n')}\nbots: *g\n`));
  assert.equal(error.code, 'E_CONFIG_ALIASES');
  assert.match(error.message, /bomb\.yaml:2:8: b\[0\]: YAML aliases here expand to more than 100 copies/);
  // a few aliases are fine
  const ok = loadConfig(write('alias.yaml', 'bots:\n  - { name: a, appId: "1", secret: &s shared }\n  - { name: b, appId: "2", secret: *s }\n'), { env: {} });
  assert.equal(ok.bots[1]!.secret?.reveal(), 'shared');
  const dangling = failure(write('dangling.yaml', 'bots:\n  - { name: a, appId: "1", secret: *nowhere }\n'));
  assert.match(dangling.message, /dangling\.yaml:2:36: bots\[0\]\.secret: .*nowhere/);
});

test('bytes that are not UTF-8 are refused at their line, column and field, never turned into U+FFFD', () => {
  const latin1 = Buffer.concat([Buffer.from('bots:\n  - name: a\n    appId: "1"\n    secret: caf'), Buffer.from([0xe9]), Buffer.from('-secret\n')]);
  const error = failure(write('latin1.yaml', latin1 as unknown as string));
  assert.equal(error.code, 'E_CONFIG_ENCODING');
  assert.equal(error.message, `${error.file}:4:16: bots[0].secret: byte 0xe9 is not valid UTF-8 (was the file saved as GBK or Latin-1?); save it as UTF-8`);

  const text = 'bots:\n  - name: a\n    appId: "1"\n    secret: s\n';
  const utf16 = failure(write('utf16.yaml', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]) as unknown as string));
  assert.equal(utf16.code, 'E_CONFIG_ENCODING');
  assert.match(utf16.message, /utf16\.yaml: the file is UTF-16 .*save it as UTF-8/);
  const noBom = failure(write('utf16-nobom.yaml', Buffer.from(text, 'utf16le') as unknown as string));
  assert.match(noBom.message, /utf16-nobom\.yaml:1:2: a NUL byte: the file is not UTF-8 text \(UTF-16 saved without a byte-order mark\?\)/);

  // a UTF-8 byte-order mark and non-ASCII text are fine
  const bom = loadConfig(write('bom.yaml', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('bots:\n  - name: a\n    appId: "1"\n    secret: 密钥-ключ\n')]) as unknown as string), { env: {} });
  assert.equal(bom.bots[0]!.secret?.reveal(), '密钥-ключ');
});

test('an oversized file is refused without being parsed', () => {
  const big = `bots:\n  - { name: a, appId: "1", secret: s }\n# ${'x'.repeat(2 * 1024 * 1024)}\n`;
  const error = failure(write('big.yaml', big));
  assert.equal(error.code, 'E_CONFIG_TOO_LARGE');
  assert.match(error.message, /big\.yaml: the file is \d+ bytes; a bot\.yaml may be at most 1048576 bytes/);
});

test('a plugins folder that does not exist is named where it is set', () => {
  const explicit = failure(write('nodir.yaml', 'pluginsDir: ./no-such-folder\nbots:\n  - { name: a, appId: "1", secret: s }\n'));
  assert.equal(explicit.code, 'E_CONFIG_PLUGINS_DIR');
  assert.match(explicit.message, /nodir\.yaml:1:13: pluginsDir: the plugins folder .*no-such-folder does not exist/);

  const other = mkdtempSync(join(tmpdir(), 'qqbot-config-noplugins-'));
  writeFileSync(join(other, 'bot.yaml'), 'bots:\n  - { name: a, appId: "1", secret: s }\n');
  const byDefault = failure(join(other, 'bot.yaml'));
  assert.match(byDefault.message, /bot\.yaml: no plugins folder: .*plugins does not exist; create it/);
  // a bot that lists its (npm) plugins by name does not need the folder
  writeFileSync(join(other, 'bot.yaml'), 'bots:\n  - { name: a, appId: "1", secret: s, plugins: { qqbot-plugin-x: {} } }\n');
  assert.equal(loadConfig(join(other, 'bot.yaml'), { env: {} }).bots.length, 1);
});

test('a shard count no bot could start is refused', () => {
  const error = failure(write('shards.yaml', 'bots:\n  - name: a\n    appId: "1"\n    secret: s\n    shards: 100000000\n'));
  assert.equal(error.code, 'E_CONFIG_SHARDS');
  assert.match(error.message, /shards\.yaml:5:13: bots\[0\]\.shards: 100000000 shards cannot start: .* at most 1000/);
  assert.equal(loadConfig(write('shards-ok.yaml', 'bots:\n  - { name: a, appId: "1", secret: s, shards: 1000 }\n'), { env: {} }).bots[0]!.shards, 1000);
});

test('one app twice on one platform is refused unless the second entry says sameAppAs', () => {
  const dup = failure(write('dupapp.yaml', 'bots:\n  - name: a\n    appId: "102"\n    secret: s\n  - name: b\n    appId: "102"\n    secret: s\n'));
  assert.equal(dup.code, 'E_CONFIG_DUPLICATE_APP');
  assert.equal(dup.message, `${dup.file}:6:12: bots[1].appId: app 102 on production is also bot "a" (${dup.file}:3:12): two sessions of one app split its events and have its replies refused; remove one, or add \`sameAppAs: a\` if both are this app on purpose`);

  // the same app in the sandbox and in production are two platforms
  const both = loadConfig(write('sandbox-prod.yaml', 'bots:\n  - { name: prod, appId: "102", secret: s }\n  - { name: test, appId: "102", secret: s, endpoint: sandbox }\n'), { env: {} });
  assert.equal(both.bots.length, 2);
  // on purpose: said so, naming the earlier entry
  const meant = loadConfig(write('same.yaml', 'bots:\n  - { name: a, appId: "102", secret: s }\n  - { name: b, appId: "102", secret: s, sameAppAs: a, transport: { webhook: { port: 8443 } } }\n'), { env: {} });
  assert.equal(meant.bots[1]!.sameAppAs, 'a');

  const wrongName = failure(write('same-bad.yaml', 'bots:\n  - { name: a, appId: "102", secret: s }\n  - { name: b, appId: "102", secret: s, sameAppAs: c }\n'));
  assert.match(wrongName.message, /same-bad\.yaml:3:52: bots\[1\]\.sameAppAs: names "c", which is not a bot listed before this one/);
  const otherApp = failure(write('same-other.yaml', 'bots:\n  - { name: a, appId: "101", secret: s }\n  - { name: b, appId: "102", secret: s, sameAppAs: a }\n'));
  assert.match(otherApp.message, /bots\[1\]\.sameAppAs: bot "a" is app 101 on production, not app 102 on production/);
  const otherSecret = failure(write('same-secret.yaml', 'bots:\n  - { name: a, appId: "102", secret: s1 }\n  - { name: b, appId: "102", secret: s2, sameAppAs: a }\n'));
  assert.match(otherSecret.message, /bots\[1\]\.sameAppAs: the credentials differ from bot "a"'s/);
  assert.ok(!otherSecret.message.includes('s1') && !otherSecret.message.includes('s2'));
});

test('listeners that would clash, and a console open to the network without a token, are refused', () => {
  const metrics = failure(write('clash.yaml', 'console: { port: 8080 }\nmetrics: { port: 8080 }\nbots:\n  - { name: a, appId: "1", secret: s }\n'));
  assert.equal(metrics.code, 'E_CONFIG_PORT_CLASH');
  assert.equal(metrics.message, `${metrics.file}:2:18: metrics.port: port 8080 is also console.port (${metrics.file}:1:18); each listener needs a port of its own`);

  const webhook = failure(write('clash-hook.yaml', 'metrics: { port: 9464, host: 0.0.0.0 }\nbots:\n  - { name: a, appId: "1", secret: s, transport: { webhook: { port: 9464 } } }\n'));
  assert.match(webhook.message, /clash-hook\.yaml:3:69: bots\[0\]\.transport\.webhook\.port: port 9464 is also metrics\.port/);

  // other addresses, or free ports picked at start-up, do not clash
  loadConfig(write('no-clash.yaml', 'console: { port: 0 }\nmetrics: { port: 0 }\nbots:\n  - { name: a, appId: "1", secret: s, transport: { webhook: { port: 8080, host: 127.0.0.2 } } }\n  - { name: b, appId: "2", secret: s, transport: { webhook: { port: 8080 } } }\n'), { env: {} });

  const open = failure(write('open.yaml', 'console: { port: 8080, host: 0.0.0.0 }\nbots:\n  - { name: a, appId: "1", secret: s }\n'));
  assert.equal(open.code, 'E_CONFIG_CONSOLE_TOKEN');
  assert.match(open.message, /open\.yaml:1:30: console\.host: the console would listen on 0\.0\.0\.0, which other machines can reach, without a token/);
});
