/**
 * A plugin distributed on npm: `npm pack`ed, installed offline into a temporary project's
 * node_modules, discovered, enabled from bot.yaml by package name, bundled, run in the sandbox, and
 * answering a message that the platform simulator sends, through the capability layer and the
 * real OpenAPI client.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { API_METHODS } from '../sdk-types/api.ts';
import { startSimulator, type Simulator, type OutboxEntry } from '../runtime/simulator/index.ts';
import { Secret } from '../runtime/config/secret.ts';
import { OpenAPIClient, LegacyTokenSource } from '../runtime/openapi/index.ts';
import { discoverPlugins, selectPlugins } from '../runtime/plugins/discovery.ts';
import { resolveLimits, resolvePluginConfig } from '../runtime/plugins/manifest.ts';
import { bundlePlugin } from '../runtime/plugins/bundler.ts';
import { createCapabilityHandler } from '../runtime/plugins/capabilities/index.ts';
import { PluginSupervisor } from '../runtime/plugins/sandbox/supervisor.ts';
import type { PluginInstanceSpec } from '../runtime/plugins/instance.ts';

const run = promisify(execFile);
const APP_ID = '1020000001';
const TOKEN = 'simulator-token';

let root: string;
let sim: Simulator;
let client: OpenAPIClient;
let supervisor: PluginSupervisor | undefined;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'qqbot-npm-'));
  sim = await startSimulator({ port: 0 });
  client = new OpenAPIClient({ baseUrl: sim.url, appId: APP_ID, tokenSource: new LegacyTokenSource(APP_ID, new Secret(TOKEN)), retries: 0 });
});
after(async () => {
  await supervisor?.stop();
  await client.close();
  await sim.close();
  await rm(root, { recursive: true, force: true });
});

test('an npm-packed plugin is installed, discovered, enabled by package name, and answers through the simulator', async () => {
  // 1. the plugin author's package
  const src = join(root, 'author', 'qqbot-plugin-greeter');
  await mkdir(join(src, 'lib'), { recursive: true });
  await writeFile(join(src, 'package.json'), JSON.stringify({
    name: 'qqbot-plugin-greeter',
    version: '0.3.0',
    type: 'module',
    main: 'index.js',
    files: ['index.js', 'lib/'],
    qqbot: {
      events: ['GROUP_AT_MESSAGE_CREATE'],
      permissions: ['messages.send'],
      config: { type: 'object', properties: { greeting: { type: 'string', default: 'hello' } } },
    },
  }, null, 2));
  await writeFile(join(src, 'lib', 'format.js'), 'export const format = (greeting, text, n) => `${greeting}, ${text.trim()} (${n} api methods)`;\n');
  await writeFile(join(src, 'index.js'), [
    "import { API_METHODS } from 'qqbot-sdk-types';",
    "import { format } from './lib/format.js';",
    'export default function setup(ctx) {',
    "  ctx.on('GROUP_AT_MESSAGE_CREATE', async (event) => {",
    '    await event.reply(format(ctx.config.greeting, event.data.content, Object.keys(API_METHODS).length));',
    '  });',
    '}',
  ].join('\n'));

  // 2. npm pack (no network needed for a local folder)
  const env = { ...process.env, npm_config_cache: join(root, 'npm-cache'), npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
  const packDir = join(root, 'packed');
  await mkdir(packDir);
  await run('npm', ['pack', '--pack-destination', packDir], { cwd: src, env, timeout: 60_000 });
  const [tarball] = await readdir(packDir);
  assert.equal(tarball, 'qqbot-plugin-greeter-0.3.0.tgz');

  // 3. a user's project installs it offline (the tarball has no dependencies)
  const project = join(root, 'project');
  await mkdir(project);
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'my-bot', private: true, version: '1.0.0' }));
  await run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', join(packDir, tarball!)], { cwd: project, env, timeout: 90_000 });

  // 4. discovery + bot.yaml enabling it by package name
  const discovered = await discoverPlugins({ pluginsDir: join(project, 'plugins'), projectDir: project });
  assert.deepEqual(discovered.problems, []);
  const found = discovered.plugins.find((p) => p.packageName === 'qqbot-plugin-greeter');
  assert.ok(found, 'the installed package is discovered');
  assert.equal(found.source, 'npm');
  assert.equal(found.dir, join(project, 'node_modules', 'qqbot-plugin-greeter'));
  const botYaml = parseYaml('bots:\n  main:\n    appId: "1020000001"\n    plugins:\n      qqbot-plugin-greeter:\n        greeting: 你好\n') as { bots: { main: { plugins: Record<string, unknown> } } };
  const sections = botYaml.bots.main.plugins;
  const [plugin] = selectPlugins(discovered.plugins, Object.keys(sections));
  assert.equal(plugin, found);
  const config = resolvePluginConfig(plugin!, sections['qqbot-plugin-greeter'], { path: 'bots.main.plugins.qqbot-plugin-greeter' });

  // 5. bundle and run it in the sandbox, capabilities backed by the simulator's OpenAPI
  const bundle = await bundlePlugin({ entry: plugin!.main, displayRoot: project });
  assert.ok(bundle.inputs.includes(join(project, 'node_modules', 'qqbot-plugin-greeter', 'lib', 'format.js')));
  const capabilities = createCapabilityHandler({ bots: { main: { request: (m, p, o) => client.request(m, p, o) } } });
  const spec: PluginInstanceSpec = {
    id: `main/${plugin!.name}`, plugin: plugin!.name, bot: { name: 'main', appId: APP_ID }, version: 1,
    code: bundle.code, sourceMap: bundle.sourceMap, filename: bundle.filename, config,
    permissions: plugin!.manifest.permissions ?? [], events: plugin!.manifest.events, limits: resolveLimits(plugin!.manifest),
  };
  assert.ok(!JSON.stringify(spec).includes(TOKEN), 'nothing handed to the sandbox carries the token');
  capabilities.registerInstance(spec, { fetchHosts: plugin!.manifest.fetchHosts ?? [] });
  supervisor = new PluginSupervisor({ onCall: capabilities.handle });
  await supervisor.start();
  await supervisor.load(spec);

  // 6. the simulator's events go to the plugin (the dispatcher's job, done here by hand)
  const outcomes: Promise<unknown>[] = [];
  sim.on('event', (e: { t: string; d: unknown; id: string }) => {
    if (!spec.events.includes(e.t as never)) return;
    const ref = capabilities.events.register({ bot: 'main', type: e.t, id: e.id, data: e.d });
    outcomes.push(supervisor!.dispatch(spec.id, { ref, type: e.t, id: e.id, data: e.d, transport: 'websocket' }).then(async (o) => {
      await capabilities.finishEvent(ref);
      return o;
    }));
  });
  const answered = new Promise<OutboxEntry>((resolve) => sim.on('outbox', (entry: OutboxEntry) => resolve(entry)));
  const posted = sim.postMessage({ kind: 'group_at', content: ' 早上好', group_openid: 'GROUP_NPM' });
  const entry = await answered;
  const [outcome] = await Promise.all(outcomes);
  assert.equal((outcome as { status: string }).status, 'ok');
  assert.equal(entry.scene, 'group');
  assert.deepEqual(entry.target, { group_openid: 'GROUP_NPM' });
  assert.equal(entry.msg_id, posted.id);
  assert.equal(entry.msg_seq, 1);
  assert.equal(entry.body.content, `你好, 早上好 (${Object.keys(API_METHODS).length} api methods)`);
  assert.equal(entry.body.msg_type, 0);
});
