import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../bin/qqbot.js', import.meta.url));

function qqbot(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

function project(botYaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-cli-'));
  writeFileSync(join(dir, 'bot.yaml'), botYaml);
  const plugin = (name: string, events: string[], permissions: string[], config?: object) => {
    mkdirSync(join(dir, 'plugins', name), { recursive: true });
    writeFileSync(join(dir, 'plugins', name, 'package.json'), JSON.stringify({ name, version: '1.0.0', main: 'index.ts', qqbot: { events, permissions, ...(config ? { config } : {}) } }));
    writeFileSync(join(dir, 'plugins', name, 'index.ts'), 'export default function setup() {}\n');
  };
  plugin('greeter', ['AT_MESSAGE_CREATE', 'GROUP_AT_MESSAGE_CREATE'], ['messages.send'], { type: 'object', properties: { greeting: { type: 'string', default: 'hi' } }, additionalProperties: false });
  plugin('auditor', ['MESSAGE_CREATE', 'MESSAGE_AUDIT_PASS'], []);
  return dir;
}

test('--help and --version', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qqbot-cli-'));
  const help = await qqbot(['--help'], dir);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /qqbot start \[bot\.yaml\]/);
  const version = await qqbot(['--version'], dir);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  const unknown = await qqbot(['frobnicate'], dir);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
});

test('qqbot check prints bots, plugins, per-plugin and merged intents, and flags private-domain bits', async () => {
  const dir = project([
    'bots:',
    '  - name: main',
    '    appId: "1020000001"',
    '    secret: ${MAIN_SECRET}',
    '    plugins:',
    '      greeter: { greeting: hello }',
    '      auditor: {}',
    '  - name: side',
    '    appId: "1020000002"',
    '    token: legacy-token',
    '    endpoint: sandbox',
    '    plugins: { greeter: {} }',
    '    intents: [DIRECT_MESSAGE]',
  ].join('\n'));
  const result = await qqbot(['check'], dir, { MAIN_SECRET: 'main-secret-value' });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /bot main \(app 1020000001\) → production, websocket, shards auto, auth access token/);
  assert.match(result.stdout, /plugin greeter: AT_MESSAGE_CREATE, GROUP_AT_MESSAGE_CREATE → GROUP_AND_C2C_EVENT \| PUBLIC_GUILD_MESSAGES; permissions: messages.send/);
  assert.match(result.stdout, /plugin auditor: MESSAGE_CREATE, MESSAGE_AUDIT_PASS → GUILD_MESSAGES \| MESSAGE_AUDIT/);
  assert.match(result.stdout, new RegExp(`intents ${(1 << 9) | (1 << 25) | (1 << 27) | (1 << 30)}:`));
  assert.match(result.stdout, /GUILD_MESSAGES is private-domain/);
  assert.match(result.stdout, /bot side \(app 1020000002\) → sandbox, websocket, shards auto, auth legacy token/);
  assert.match(result.stdout, new RegExp(`intents ${(1 << 12) | (1 << 25) | (1 << 30)}:`));
  assert.ok(!(result.stdout + result.stderr).includes('main-secret-value'));
  assert.ok(!(result.stdout + result.stderr).includes('legacy-token'));
});

test('qqbot check exits 1 with file:line:col and field for YAML, schema and variable errors', async () => {
  const syntax = await qqbot(['check'], project('bots:\n  - name: a\n   appId: 1\n'));
  assert.equal(syntax.code, 1);
  assert.match(syntax.stderr, /bot\.yaml:3:\d+: /);

  const schema = await qqbot(['check'], project('bots:\n  - name: a\n    appId: "1"\n    secret: s\n    endpoint: ftp://x\n'));
  assert.equal(schema.code, 1);
  assert.match(schema.stderr, /bot\.yaml:5:15: bots\[0\]\.endpoint: expected production \| sandbox \| simulator \| URL/);

  const variable = await qqbot(['check'], project('bots:\n  - name: a\n    appId: "1"\n    secret: ${QQBOT_UNSET_FOR_TEST}\n'));
  assert.equal(variable.code, 1);
  assert.match(variable.stderr, /bot\.yaml:4:13: bots\[0\]\.secret: environment variable QQBOT_UNSET_FOR_TEST is not set/);
});

test('qqbot check exits 1 naming the plugin for an unknown plugin, a bad plugin config section and an unknown event', async () => {
  const dir = project('bots:\n  - name: a\n    appId: "1"\n    secret: s\n    plugins:\n      greeter: { greeting: 5 }\n      missing: {}\n');
  mkdirSync(join(dir, 'plugins', 'typo'));
  writeFileSync(join(dir, 'plugins', 'typo', 'package.json'), JSON.stringify({ name: 'typo', main: 'index.ts', qqbot: { events: ['AT_MESAGE_CREATE'] } }));
  writeFileSync(join(dir, 'plugins', 'typo', 'index.ts'), 'export default () => {}\n');
  mkdirSync(join(dir, 'plugins', 'sneaky'));
  writeFileSync(join(dir, 'plugins', 'sneaky', 'package.json'), JSON.stringify({ name: 'sneaky', type: 'module', main: 'index.ts', qqbot: { events: ['C2C_MESSAGE_CREATE'] } }));
  writeFileSync(join(dir, 'plugins', 'sneaky', 'index.ts'), "import { readFileSync } from 'node:fs';\nexport default () => readFileSync('/etc/passwd');\n");
  writeFileSync(join(dir, 'bot.yaml'), 'bots:\n  - name: a\n    appId: "1"\n    secret: s\n    plugins:\n      greeter: { greeting: 5 }\n      missing: {}\n      sneaky: {}\n');
  const result = await qqbot(['check'], dir);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /plugin "missing" is enabled but was not found/);
  assert.match(result.stderr, /plugin sneaky: .*sneaky\/index\.ts:1:\d+.*node:fs/s);
  assert.match(result.stderr, /bot\.yaml:6:18: bots\.a\.plugins\.greeter\.greeting: must be string \(config of plugin "greeter"\)/);
  assert.match(result.stderr, /typo/);
});

test('qqbot start with a plugin config error: bot.yaml file:line:col, the key and the plugin, and exit 1 when no bot can run', async () => {
  const dir = project('bots:\n  - name: demo\n    appId: "1020000001"\n    endpoint: simulator\n    plugins:\n      greeter:\n        greeting: hi\n        units: metric\n');
  const result = await qqbot(['start'], dir);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(result.stderr, /bot demo failed: no enabled plugin could be loaded[^\n]*\n\s+plugin greeter: bot\.yaml:8:9: bots\.demo\.plugins\.greeter\.units: unknown key "units" \(config of plugin "greeter"\)/);
  assert.doesNotMatch(result.stderr, /no intents/);
});
