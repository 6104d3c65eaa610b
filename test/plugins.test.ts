/**
 * Plugin manifest, discovery and bundling: real folders on disk, real esbuild, the bundle run in a
 * real isolate (isolated-vm) to prove it is self-contained.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ivm from 'isolated-vm';
import type { EventMap } from 'qqbot-sdk-types';
import { EVENT_TYPES } from '../sdk-types/event-types.ts';
import { PluginConfigError, PluginManifestError, readPluginManifest, resolveLimits, resolvePluginConfig, validateManifest } from '../runtime/plugins/manifest.ts';
import { discoverPlugins, PluginNotFoundError, selectPlugins } from '../runtime/plugins/discovery.ts';
import { bundlePlugin, PluginBuildError } from '../runtime/plugins/bundler.ts';
import { DEFAULT_LIMITS, MAX_LIMITS } from '../runtime/plugins/instance.ts';
import { describePending, hasPending, readGrants, reviewGrant, writeGrant } from '../runtime/plugins/grants.ts';

let root: string;

async function writePlugin(dir: string, pkg: Record<string, unknown>, files: Record<string, string> = { 'index.ts': 'export default function setup() {}' }): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), text);
  }
}

const goodManifest = {
  events: ['AT_MESSAGE_CREATE'],
  permissions: ['messages.send', 'storage'],
  config: { type: 'object', properties: { maxDice: { type: 'integer', minimum: 1, default: 10 }, prefix: { type: 'string', default: '/roll' } }, additionalProperties: false },
};

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'qqbot-plugins-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('EVENT_TYPES', () => {
  test('lists every EventMap key exactly once', () => {
    assert.equal(new Set(EVENT_TYPES).size, EVENT_TYPES.length);
    // a sample of both ends of the map; the compile-time check in event-types.ts covers the rest
    const keys: (keyof EventMap)[] = ['GUILD_CREATE', 'AT_MESSAGE_CREATE', 'INTERACTION_CREATE', 'C2C_MESSAGE_CREATE', 'PUBLIC_MESSAGE_DELETE'];
    for (const k of keys) assert.ok((EVENT_TYPES as readonly string[]).includes(k), k);
  });
});

describe('manifest', () => {
  test('a valid manifest is read with its entry file and limits resolved within the host maxima', async () => {
    const dir = join(root, 'm-good');
    await writePlugin(dir, { name: 'qqbot-plugin-dice', version: '1.2.3', main: 'src/main.ts', qqbot: { ...goodManifest, limits: { memoryMb: 64 } } }, { 'src/main.ts': 'export default () => {}' });
    const loaded = await readPluginManifest(dir);
    assert.equal(loaded.packageName, 'qqbot-plugin-dice');
    assert.equal(loaded.version, '1.2.3');
    assert.equal(loaded.main, join(dir, 'src/main.ts'));
    assert.deepEqual(loaded.manifest.events, ['AT_MESSAGE_CREATE']);
    const limits = resolveLimits(loaded.manifest);
    assert.equal(limits.memoryMb, 64);
    assert.equal(limits.entryTimeoutMs, DEFAULT_LIMITS.entryTimeoutMs);
  });

  test('an unknown permission is named with plugin file, field index and value', async () => {
    const dir = join(root, 'plugins-bad', 'dice');
    await writePlugin(dir, { name: 'dice', qqbot: { events: ['AT_MESSAGE_CREATE'], permissions: ['messages.send', 'foo'] } });
    await assert.rejects(readPluginManifest(dir, { plugin: 'dice', displayFile: 'plugins/dice/package.json' }), (error: unknown) => {
      assert.ok(error instanceof PluginManifestError);
      assert.equal(error.code, 'E_PLUGIN_MANIFEST');
      assert.equal(error.message, 'plugins/dice/package.json: qqbot.permissions[1]: unknown permission "foo"');
      assert.equal(error.context.plugin, 'dice');
      assert.equal(error.context.field, 'qqbot.permissions[1]');
      return true;
    });
  });

  test('unknown events, unknown fields, limits above the maxima and broken config schemas are each reported', () => {
    const problems = (v: unknown) => validateManifest(v).map((p) => `${p.field}: ${p.message}`);
    assert.deepEqual(problems({ events: ['AT_MESSAGE_CREATE', 'MESSAGE_CRAETE'] }), ['qqbot.events[1]: unknown event type "MESSAGE_CRAETE"']);
    assert.deepEqual(problems({ events: ['AT_MESSAGE_CREATE'], permisions: [] }), ['qqbot.permisions: unknown field']);
    assert.deepEqual(problems({ permissions: [] }), ['qqbot.events: is required']);
    assert.deepEqual(problems({ events: ['AT_MESSAGE_CREATE'], limits: { memoryMb: MAX_LIMITS.memoryMb + 1 } }),
      [`qqbot.limits.memoryMb: ${MAX_LIMITS.memoryMb + 1} exceeds the host maximum ${MAX_LIMITS.memoryMb}`]);
    const broken = problems({ events: ['AT_MESSAGE_CREATE'], config: { type: 'object', properties: { n: { type: 'integr' } } } });
    assert.equal(broken.length, 1);
    assert.match(broken[0]!, /^qqbot\.config: not a valid JSON Schema/);
    assert.deepEqual(problems({ events: ['AT_MESSAGE_CREATE'], fetchHosts: ['https://x.example/path'] }).map((p) => p.split(':')[0]), ['qqbot.fetchHosts[0]']);
  });

  test('a missing entry file is an error on the main field', async () => {
    const dir = join(root, 'm-nomain');
    await writePlugin(dir, { name: 'nomain', main: 'lib/gone.js', qqbot: { events: ['AT_MESSAGE_CREATE'] } }, {});
    await assert.rejects(readPluginManifest(dir, { plugin: 'nomain', displayFile: 'plugins/nomain/package.json' }),
      { code: 'E_PLUGIN_MANIFEST', message: 'plugins/nomain/package.json: main: entry file "lib/gone.js" does not exist' });
  });

  test('an entry in a sibling folder that shares the plugin folder\'s name prefix is outside the plugin', async () => {
    const dir = join(root, 'prefix', 'dice');
    await writePlugin(join(root, 'prefix', 'dice-evil'), { name: 'x', qqbot: { events: ['AT_MESSAGE_CREATE'] } });
    await writePlugin(dir, { name: 'dice', main: '../dice-evil/index.ts', qqbot: { events: ['AT_MESSAGE_CREATE'] } }, {});
    await assert.rejects(readPluginManifest(dir, { plugin: 'dice', displayFile: 'plugins/dice/package.json' }),
      { code: 'E_PLUGIN_MANIFEST', message: 'plugins/dice/package.json: main: "../dice-evil/index.ts" points outside the plugin folder' });
  });

  test('a config schema with an $id can be read again (reloads, several bots, several test harnesses)', async () => {
    const dir = join(root, 'm-id');
    const config = { $id: 'https://example.com/qqbot-plugin-id.json', type: 'object', properties: { n: { type: 'integer', default: 2 } } };
    await writePlugin(dir, { name: 'with-id', qqbot: { events: ['AT_MESSAGE_CREATE'], config } });
    for (let i = 0; i < 2; i++) {
      const loaded = await readPluginManifest(dir);
      assert.deepEqual(resolvePluginConfig({ name: 'with-id', manifest: loaded.manifest }, {}), { n: 2 });
    }
  });

  test('plugin config: defaults applied, the bot.yaml section validated, errors name file:line:col, the key and the plugin', () => {
    const plugin = { name: 'dice', manifest: goodManifest as never };
    assert.deepEqual(resolvePluginConfig(plugin, undefined), { maxDice: 10, prefix: '/roll' });
    assert.deepEqual(resolvePluginConfig(plugin, { maxDice: 3 }), { maxDice: 3, prefix: '/roll' });
    const section = { maxDice: 3 };
    resolvePluginConfig(plugin, section);
    assert.deepEqual(section, { maxDice: 3 }, 'the caller\'s object is not mutated');
    const positions: Record<string, { file: string; line: number; col: number }> = { '': { file: 'bot.yaml', line: 7, col: 7 }, maxDice: { file: 'bot.yaml', line: 8, col: 9 } };
    const site = { path: 'bots.main.plugins.dice', locate: (field: string) => positions[field] };
    assert.throws(() => resolvePluginConfig(plugin, { maxDice: 'many' }, site), (error: unknown) => {
      assert.ok(error instanceof PluginConfigError);
      assert.equal(error.code, 'E_PLUGIN_CONFIG');
      assert.equal(error.message, 'bot.yaml:8:9: bots.main.plugins.dice.maxDice: must be integer (config of plugin "dice")');
      return true;
    });
    // an unknown key is named, and placed at its own line when known, else at the section
    assert.throws(() => resolvePluginConfig(plugin, { colour: 'red' }, site), /: bot\.yaml:7:7: bots\.main\.plugins\.dice\.colour: unknown key "colour"/);
    assert.throws(() => resolvePluginConfig(plugin, { colour: 'red' }), /: config\.colour: unknown key "colour" \(config of plugin "dice"\)/);
  });
});

describe('discovery', () => {
  test('finds plugin folders and npm packages (scoped too), reports bad ones and keeps the rest', async () => {
    const project = join(root, 'project-a');
    const pluginsDir = join(project, 'plugins');
    await writePlugin(join(pluginsDir, 'echo'), { name: 'qqbot-plugin-echo-local', qqbot: { events: ['AT_MESSAGE_CREATE'], permissions: ['messages.send'] } });
    await writePlugin(join(pluginsDir, 'broken'), { name: 'broken', qqbot: { events: ['NOPE'] } });
    await mkdir(join(pluginsDir, 'not-a-plugin'), { recursive: true });
    await writeFile(join(pluginsDir, 'not-a-plugin', 'package.json'), JSON.stringify({ name: 'lib' }));
    await writePlugin(join(project, 'node_modules', 'qqbot-plugin-weather'), { name: 'qqbot-plugin-weather', version: '2.0.0', main: 'index.js', qqbot: { events: ['GROUP_AT_MESSAGE_CREATE'], permissions: ['net.fetch'], fetchHosts: ['api.weather.example'] } }, { 'index.js': 'export default () => {}' });
    await writePlugin(join(project, 'node_modules', '@acme', 'qqbot-plugin-x'), { name: '@acme/qqbot-plugin-x', main: 'index.js', qqbot: { events: ['C2C_MESSAGE_CREATE'] } }, { 'index.js': 'export default () => {}' });
    await writePlugin(join(project, 'node_modules', 'left-pad'), { name: 'left-pad', main: 'index.js' }, { 'index.js': '' });

    const result = await discoverPlugins({ pluginsDir, projectDir: project });
    const summary = result.plugins.map((p) => `${p.source}:${p.name}:${p.packageName}`).sort();
    assert.deepEqual(summary, [
      'folder:echo:qqbot-plugin-echo-local',
      'npm:@acme/qqbot-plugin-x:@acme/qqbot-plugin-x',
      'npm:qqbot-plugin-weather:qqbot-plugin-weather',
    ]);
    const weather = result.plugins.find((p) => p.name === 'qqbot-plugin-weather')!;
    assert.equal(weather.dir, join(project, 'node_modules', 'qqbot-plugin-weather'));
    assert.deepEqual(weather.manifest.fetchHosts, ['api.weather.example']);
    assert.equal(result.problems.length, 1);
    assert.equal(result.problems[0]!.plugin, 'broken');
    assert.equal(result.problems[0]!.message, 'plugins/broken/package.json: qqbot.events[0]: unknown event type "NOPE"');

    // bot.yaml enables by folder name or package name; default is every folder plugin
    assert.deepEqual(selectPlugins(result.plugins, ['echo', '@acme/qqbot-plugin-x']).map((p) => p.name), ['echo', '@acme/qqbot-plugin-x']);
    assert.deepEqual(selectPlugins(result.plugins, ['qqbot-plugin-echo-local']).map((p) => p.name), ['echo']);
    assert.deepEqual(selectPlugins(result.plugins).map((p) => p.name), ['echo']);
    assert.throws(() => selectPlugins(result.plugins, ['dice']), (e: unknown) => e instanceof PluginNotFoundError && e.code === 'E_PLUGIN_NOT_FOUND' && /"dice"/.test(e.message));
  });

  test('a plugin folder that is also linked into node_modules (a workspace) is one plugin, not a clash', async () => {
    const project = join(root, 'project-ws');
    const pluginsDir = join(project, 'plugins');
    await writePlugin(join(pluginsDir, 'greeter'), { name: 'qqbot-plugin-greeter', qqbot: { events: ['AT_MESSAGE_CREATE'] } });
    await mkdir(join(project, 'node_modules'), { recursive: true });
    await symlink(join('..', 'plugins', 'greeter'), join(project, 'node_modules', 'qqbot-plugin-greeter'), 'dir');
    const result = await discoverPlugins({ pluginsDir, projectDir: project });
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.plugins.map((p) => `${p.source}:${p.name}`), ['folder:greeter']);
    assert.deepEqual(selectPlugins(result.plugins, ['qqbot-plugin-greeter']).map((p) => p.name), ['greeter']);
  });

  test('a plugin folder and an installed package of the same name: the folder wins, with a warning naming both paths', async () => {
    const project = join(root, 'project-clash');
    const pluginsDir = join(project, 'plugins');
    await writePlugin(join(pluginsDir, 'qqbot-plugin-echo'), { name: 'my-echo', qqbot: { events: ['AT_MESSAGE_CREATE'] } });
    await writePlugin(join(project, 'node_modules', 'qqbot-plugin-echo'), { name: 'qqbot-plugin-echo', main: 'index.js', qqbot: { events: ['AT_MESSAGE_CREATE'] } }, { 'index.js': 'export default () => {}' });
    await writePlugin(join(pluginsDir, 'dice'), { name: 'dice', qqbot: { events: ['AT_MESSAGE_CREATE'] } });
    // the same package name in a folder and in node_modules (the issue's plugins/weather case)
    await writePlugin(join(pluginsDir, 'weather'), { name: 'qqbot-plugin-weather', qqbot: { events: ['AT_MESSAGE_CREATE'] } });
    await writePlugin(join(project, 'node_modules', 'qqbot-plugin-weather'), { name: 'qqbot-plugin-weather', main: 'index.js', qqbot: { events: ['AT_MESSAGE_CREATE'] } }, { 'index.js': 'export default () => {}' });
    const result = await discoverPlugins({ pluginsDir, projectDir: project });
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.plugins.map((p) => `${p.name}:${p.source}`), ['dice:folder', 'qqbot-plugin-echo:folder', 'weather:folder']);
    assert.deepEqual(result.warnings.map((w) => w.plugin), ['qqbot-plugin-echo', 'qqbot-plugin-weather']);
    for (const warning of result.warnings) {
      assert.equal(warning.code, 'W_PLUGIN_SHADOWED');
      assert.ok(warning.message.includes(join(project, 'node_modules', warning.plugin)), warning.message);
      assert.match(warning.message, /a plugin folder wins over a package of the same name/);
    }
    // bot.yaml naming either the folder or the package name gets the folder
    assert.deepEqual(selectPlugins(result.plugins, ['qqbot-plugin-weather', 'qqbot-plugin-echo']).map((p) => p.dir), [join(pluginsDir, 'weather'), join(pluginsDir, 'qqbot-plugin-echo')]);

    // two folders sharing a package name both load; only that shared name is refused, naming both
    await writePlugin(join(pluginsDir, 'weather-copy'), { name: 'qqbot-plugin-weather', qqbot: { events: ['AT_MESSAGE_CREATE'] } });
    const again = await discoverPlugins({ pluginsDir, projectDir: project });
    assert.ok(again.plugins.some((p) => p.name === 'weather') && again.plugins.some((p) => p.name === 'weather-copy'));
    assert.deepEqual(selectPlugins(again.plugins, ['weather-copy']).map((p) => p.name), ['weather-copy']);
    assert.throws(() => selectPlugins(again.plugins, ['qqbot-plugin-weather']), /that is the package name of .*weather \(folder weather\) and .*weather-copy \(folder weather-copy\); enable one by its folder name/);
  });
});

describe('grants', () => {
  const manifest = (permissions: string[], fetchHosts: string[] = []) => ({ events: ['AT_MESSAGE_CREATE'], permissions, fetchHosts }) as never;

  test('an npm plugin runs on what was granted; the rest is pending; a folder plugin gets what it asks', () => {
    const table = { 'qqbot-plugin-mod': { version: '1.0.0', permissions: ['messages.send', 'storage'], fetchHosts: ['a.example'] } };
    const review = reviewGrant({ name: 'qqbot-plugin-mod', source: 'npm', manifest: manifest(['messages.send', 'members.manage'], ['a.example', 'b.example']) }, table);
    assert.deepEqual(review.effective, { permissions: ['messages.send'], fetchHosts: ['a.example'] });
    assert.deepEqual(review.pending, { permissions: ['members.manage'], fetchHosts: ['b.example'] });
    assert.deepEqual(review.dropped, { permissions: ['storage'], fetchHosts: [] });
    assert.equal(describePending(review), 'members.manage, fetch host b.example');
    const never = reviewGrant({ name: 'qqbot-plugin-new', source: 'npm', manifest: manifest(['messages.send']) }, table);
    assert.ok(never.unreviewed);
    assert.deepEqual(never.effective.permissions, []);
    const folder = reviewGrant({ name: 'mine', source: 'folder', manifest: manifest(['members.manage']) }, {});
    assert.deepEqual(folder.effective.permissions, ['members.manage']);
    assert.ok(!hasPending(folder));
  });

  test('the grants file: one line per grant, other entries and comments kept, errors with file:line:col', async () => {
    const file = join(root, 'grants', 'plugin-grants.yaml');
    await mkdir(join(root, 'grants'), { recursive: true });
    await writeGrant(file, 'qqbot-plugin-a', { version: '1.0.0', permissions: ['storage', 'messages.send'], fetchHosts: [] });
    await writeFile(file, `${await readFile(file, 'utf8')}# reviewed by ops, ticket 42\n`);
    await writeGrant(file, '@scope/qqbot-plugin-b', { version: '2.0.0', permissions: ['net.fetch'], fetchHosts: ['api.example.com'] });
    const text = await readFile(file, 'utf8');
    assert.match(text, /qqbot-plugin-a:\n {2}version: 1\.0\.0\n {2}permissions:\n {4}- messages\.send\n {4}- storage\n {2}fetchHosts: \[\]\n/);
    assert.match(text, /# reviewed by ops, ticket 42/);
    assert.deepEqual(readGrants(file), {
      'qqbot-plugin-a': { version: '1.0.0', permissions: ['messages.send', 'storage'], fetchHosts: [] },
      '@scope/qqbot-plugin-b': { version: '2.0.0', permissions: ['net.fetch'], fetchHosts: ['api.example.com'] },
    });
    await writeGrant(file, 'qqbot-plugin-a', undefined);
    assert.deepEqual(Object.keys(readGrants(file)), ['@scope/qqbot-plugin-b']);
    assert.deepEqual(readGrants(join(root, 'grants', 'missing.yaml')), {});

    await writeFile(file, 'qqbot-plugin-a:\n  version: 1.0.0\n  permissions: messages.send\n');
    assert.throws(() => readGrants(file), /plugin-grants\.yaml:3:16: qqbot-plugin-a\.permissions: expected a list of strings/);
    await writeFile(file, 'qqbot-plugin-a: [\n');
    assert.throws(() => readGrants(file), (error: Error & { code?: string }) => error.code === 'E_GRANTS_FILE' && /plugin-grants\.yaml:\d+:\d+: /.test(error.message));
  });
});

describe('bundler', () => {
  test('bundles a TS entry with local modules, a pure-JS dependency and qqbot-sdk-types values into one script that runs in an isolate', async () => {
    const dir = join(root, 'bundle-ok', 'plugins', 'counter');
    await writePlugin(dir, { name: 'counter', main: 'index.ts', qqbot: { events: ['AT_MESSAGE_CREATE'] } }, {
      'index.ts': [
        "import { API_METHODS, EVENT_TYPES, type PluginContext } from 'qqbot-sdk-types';",
        "import { double } from './lib/math.ts';",
        "import pad from 'tiny-pad';",
        'export default function setup(ctx: PluginContext) { return ctx; }',
        "export const summary = pad(String(double(21))) + ':' + API_METHODS.kickMember + ':' + EVENT_TYPES.length;",
      ].join('\n'),
      'lib/math.ts': 'export const double = (n: number): number => n * 2;',
      'node_modules/tiny-pad/package.json': JSON.stringify({ name: 'tiny-pad', main: 'index.js' }),
      'node_modules/tiny-pad/index.js': "module.exports = function pad(s) { return ('     ' + s).slice(-5); };",
    });
    const bundle = await bundlePlugin({ entry: join(dir, 'index.ts'), displayRoot: join(root, 'bundle-ok', 'plugins') });
    assert.equal(bundle.filename, join('counter', 'index.ts'));
    assert.ok(bundle.inputs.includes(join(dir, 'index.ts')));
    assert.ok(bundle.inputs.includes(join(dir, 'lib', 'math.ts')));
    assert.ok(bundle.inputs.includes(join(dir, 'node_modules', 'tiny-pad', 'index.js')));
    const map = JSON.parse(bundle.sourceMap) as { sources: string[] };
    assert.ok(map.sources.includes('counter/index.ts'), map.sources.join(','));

    // the bundle needs nothing from the host: run it in a bare isolate
    const isolate = new ivm.Isolate({ memoryLimit: 16 });
    try {
      const context = await isolate.createContext();
      const script = await isolate.compileScript(`${bundle.code}\n;typeof __plugin.default + '|' + __plugin.summary`, { filename: bundle.filename });
      const out = await script.run(context, { timeout: 1000 });
      assert.equal(out, `function|   42:members.manage:${EVENT_TYPES.length}`);
    } finally {
      isolate.dispose();
    }
  });

  test('Node built-ins are refused with the importing file:line and the import, wherever they are imported', async () => {
    const dir = join(root, 'bundle-bad', 'plugins', 'sneaky');
    await writePlugin(dir, { name: 'sneaky', qqbot: { events: ['AT_MESSAGE_CREATE'] } }, {
      'index.ts': "import { steal } from './lib.ts';\nexport default function setup() { steal(); }\n",
      'lib.ts': "export const x = 1;\nimport { execSync } from 'child_process';\nexport function steal() { return execSync('id'); }\nconst fs = require('node:fs');\n",
    });
    await assert.rejects(bundlePlugin({ entry: join(dir, 'index.ts'), displayRoot: join(root, 'bundle-bad', 'plugins') }), (error: unknown) => {
      assert.ok(error instanceof PluginBuildError);
      assert.equal(error.code, 'E_PLUGIN_BUILD');
      assert.equal(error.errors.length, 2);
      assert.match(error.errors[0]!, /^sneaky\/lib\.ts:2:\d+: Node built-in "child_process" is not available to plugins/);
      assert.match(error.errors[1]!, /^sneaky\/lib\.ts:4:\d+: Node built-in "node:fs" is not available to plugins/);
      return true;
    });
  });

  test('data files outside the plugin\'s folder (other plugins\' storage, operator files) cannot be bundled in; shared code can', async () => {
    const project = join(root, 'bundle-escape');
    await mkdir(join(project, 'data', 'storage', 'main'), { recursive: true });
    await writeFile(join(project, 'data', 'storage', 'main', 'dice.json'), JSON.stringify({ 'stats:u1': '{"rolls":1}' }));
    await writeFile(join(project, 'notes.txt'), 'token: SECRET-IN-A-FILE');
    const dir = join(project, 'plugins', 'thief');
    await writePlugin(dir, { name: 'thief', qqbot: { events: ['AT_MESSAGE_CREATE'] } }, {
      'index.ts': [
        "import stolen from '../../data/storage/main/dice.json';",
        "import notes from '../../notes.txt';",
        "import { ok } from './lib/ok.ts';",
        'export default function setup() { return [stolen, notes, ok]; }',
      ].join('\n'),
      'lib/ok.ts': 'export const ok = 1;',
    });
    await assert.rejects(bundlePlugin({ entry: join(dir, 'index.ts'), displayRoot: join(project, 'plugins') }), (error: unknown) => {
      assert.ok(error instanceof PluginBuildError);
      assert.equal(error.errors.length, 2, error.message);
      assert.match(error.errors[0]!, /^thief\/index\.ts:1:\d+: "\.\.\/\.\.\/data\/storage\/main\/dice\.json" is outside the plugin's folder/);
      assert.match(error.errors[1]!, /^thief\/index\.ts:2:\d+: "\.\.\/\.\.\/notes\.txt" is outside the plugin's folder/);
      assert.ok(!error.message.includes('SECRET-IN-A-FILE') && !error.message.includes('rolls'));
      return true;
    });

    // shared code outside the folder is fine for a plugin of the plugins folder…
    await mkdir(join(project, 'lib'), { recursive: true });
    await writeFile(join(project, 'lib', 'suffix.ts'), "export const suffix = '!';\n");
    await writePlugin(join(project, 'plugins', 'sharer'), { name: 'sharer', qqbot: { events: ['AT_MESSAGE_CREATE'] } }, {
      'index.ts': "import { suffix } from '../../lib/suffix.ts';\nexport default function setup() { return suffix; }\n",
    });
    const shared = await bundlePlugin({ entry: join(project, 'plugins', 'sharer', 'index.ts'), displayRoot: join(project, 'plugins') });
    assert.ok(shared.inputs.includes(join(project, 'lib', 'suffix.ts')));
    // …but a package installed from npm may not leave node_modules, not even for code
    const pkg = join(project, 'node_modules', 'qqbot-plugin-sharer');
    await writePlugin(pkg, { name: 'qqbot-plugin-sharer', main: 'index.js', qqbot: { events: ['AT_MESSAGE_CREATE'] } }, {
      'index.js': "import { suffix } from '../../lib/suffix.ts';\nexport default function setup() { return suffix; }\n",
    });
    await assert.rejects(bundlePlugin({ entry: join(pkg, 'index.js'), displayRoot: project }),
      /qqbot-plugin-sharer\/index\.js:1:\d+: "\.\.\/\.\.\/lib\/suffix\.ts" is outside the plugin's folder \(lib\/suffix\.ts\); a plugin installed from npm/);
  });

  test('a syntax error and the host-only test helper fail the build with their locations', async () => {
    const dir = join(root, 'bundle-syntax', 'plugins', 'oops');
    await writePlugin(dir, { name: 'oops', qqbot: { events: ['AT_MESSAGE_CREATE'] } }, { 'index.ts': 'export default function setup( {\n' });
    await assert.rejects(bundlePlugin({ entry: join(dir, 'index.ts'), displayRoot: join(root, 'bundle-syntax', 'plugins') }), /oops\/index\.ts:2:1: Expected identifier/);
    const dir2 = join(root, 'bundle-syntax', 'plugins', 'tester');
    await writePlugin(dir2, { name: 'tester', qqbot: { events: ['AT_MESSAGE_CREATE'] } }, { 'index.ts': "import { createTestHarness } from 'qqbot-runtime/testing';\nexport default createTestHarness;\n" });
    await assert.rejects(bundlePlugin({ entry: join(dir2, 'index.ts'), displayRoot: join(root, 'bundle-syntax', 'plugins') }), /tester\/index\.ts:1:\d+: "qqbot-runtime\/testing" is not available inside a plugin/);
  });
});
