/**
 * Plugins shared on npm, end to end, as a plugin author and an operator would do it, with no
 * registry access: the SDK and the runtime are `npm pack`ed and installed from their tarballs into
 * empty folders outside the repository; a plugin written there type-checks with a plain tsconfig and
 * passes its test in a real sandbox through the installed `qqbot-runtime/testing`; packed, it is
 * added to a bot project with `qqbot plugin add ./x.tgz` and answers on the simulator. Its upgrade
 * asks for `members.manage`: until `qqbot plugin approve`, its management calls are refused inside
 * the plugin and reach nothing; `qqbot check` shows the pending grant.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installTarballs, npm, npmEnv, tarballFiles } from './support/offline-install.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const PLUGIN = 'qqbot-plugin-greeter';

let root: string;
let packs: string;
let sdkTgz: string;
let runtimeTgz: string;
let author: string;
let project: string;
let bot: ChildProcess | undefined;

function node(args: string[], cwd: string, env: NodeJS.ProcessEnv = npmEnv()): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd, env, timeout: 180_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

async function pack(dir: string): Promise<string> {
  const { stdout } = await npm(['pack', '--pack-destination', packs], dir);
  const name = stdout.trim().split('\n').pop()!;
  return join(packs, name);
}

const pluginSource = (version: string, kick: boolean) => `import type { PluginContext, PluginEvent, PluginCallError } from 'qqbot-sdk-types';

interface Config {
  greeting: string;
}

export default function setup(ctx: PluginContext<Config>): void {
  ctx.on('AT_MESSAGE_CREATE', async (event: PluginEvent<'AT_MESSAGE_CREATE'>) => {
    const text = (event.data.content ?? '').replace(/<@!?\\w+>/g, '').trim();
${kick ? `    const kick = /^\\/kick (\\S+)$/.exec(text);
    if (kick) {
      try {
        await ctx.api.kickMember(event.data.guild_id, kick[1]!);
        await event.reply(\`kicked \${kick[1]}\`);
      } catch (error) {
        const e = error as PluginCallError;
        await event.reply(\`refused: \${e.code}: \${e.message}\`);
      }
      return;
    }
` : ''}    await event.reply(\`\${ctx.config.greeting} (v${version}), \${text}\`);
  });
}
`;

const pluginTest = `import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createTestHarness, type TestHarness } from 'qqbot-runtime/testing';

let h: TestHarness;
before(async () => {
  h = await createTestHarness({ pluginDir: '.', config: { greeting: 'hi' } });
});
after(() => h.close());

test('greets in a real sandbox', async () => {
  const { outcome, replies } = await h.emit('AT_MESSAGE_CREATE', { content: '<@!1> there' });
  assert.equal(outcome.status, 'ok');
  assert.match(String(replies[0]?.body.content), /^hi \\(v[\\d.]+\\), there$/);
});
`;

async function writeAuthorPlugin(version: string, permissions: string[], kick: boolean): Promise<void> {
  const pkg = JSON.parse(await readFile(join(author, 'package.json'), 'utf8')) as Record<string, unknown>;
  Object.assign(pkg, {
    version,
    main: 'index.ts',
    files: ['*.ts', '!*.test.ts'],
    qqbot: {
      events: ['AT_MESSAGE_CREATE'],
      permissions,
      config: { type: 'object', properties: { greeting: { type: 'string', default: 'hello' } }, additionalProperties: false },
    },
  });
  await writeFile(join(author, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  await writeFile(join(author, 'index.ts'), pluginSource(version, kick));
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'qqbot-publish-'));
  packs = join(root, 'packs');
  await mkdir(packs);
  sdkTgz = await pack(join(ROOT, 'sdk-types'));
  runtimeTgz = await pack(ROOT);
});

after(async () => {
  if (bot && bot.exitCode === null) {
    bot.kill('SIGKILL');
  }
  await rm(root, { recursive: true, force: true });
});

test('qqbot-sdk-types installs on its own: compiled .js + .d.ts, nothing from the runtime', async () => {
  const files = tarballFiles(sdkTgz);
  const names = [...files.keys()].sort();
  assert.ok(names.includes('dist/index.js') && names.includes('dist/index.d.ts') && names.includes('dist/sandbox.d.ts'), names.join(' '));
  assert.deepEqual(names.filter((n) => n.endsWith('.ts') && !n.endsWith('.d.ts')), [], 'no TypeScript sources (Node strips no types under node_modules)');
  for (const [name, text] of files) {
    if (name.startsWith('dist/')) assert.doesNotMatch(text, /from ['"](\.\.\/)+runtime|['"]qqbot-runtime/, `${name} imports the runtime`);
  }
  const manifest = JSON.parse(files.get('package.json')!) as { version: string; exports: Record<string, { types: string; default: string }> };
  assert.equal(manifest.exports['.']!.types, './dist/index.d.ts');
  // versions move in lockstep
  const runtimeManifest = JSON.parse(tarballFiles(runtimeTgz).get('package.json')!) as { version: string; dependencies: Record<string, string> };
  assert.equal(manifest.version, runtimeManifest.version);
  assert.equal(runtimeManifest.dependencies['qqbot-sdk-types'], manifest.version);
  assert.deepEqual([...tarballFiles(runtimeTgz).keys()].filter((n) => n.startsWith('runtime/')), [], 'the runtime ships dist/, not its sources');
});

test('a plugin author outside the repository: installed SDK and test helper, a plain tsconfig, a test in a real sandbox, npm pack', async () => {
  author = join(root, PLUGIN);
  await mkdir(author);
  await installTarballs(author, [sdkTgz, runtimeTgz], { field: 'devDependencies', pkg: { name: PLUGIN, version: '1.0.0', type: 'module' } });
  assert.ok(!existsSync(join(author, 'node_modules/qqbot-runtime/runtime')), 'installed from the tarball, not linked to the checkout');
  await writeAuthorPlugin('1.0.0', ['messages.send'], false);
  await writeFile(join(author, 'greeter.test.ts'), pluginTest);
  await writeFile(join(author, 'tsconfig.json'), `${JSON.stringify({
    compilerOptions: { module: 'nodenext', strict: true, noEmit: true, lib: ['ES2023'], types: ['qqbot-sdk-types/sandbox'] },
    include: ['index.ts'],
  }, null, 2)}\n`);

  const checked = await node([TSC, '-p', '.'], author);
  assert.equal(checked.code, 0, checked.stdout + checked.stderr);
  // tsc catches what the sandbox would refuse: a wrong event name, Node's globals
  await writeFile(join(author, 'index.ts'), `${pluginSource('1.0.0', false)}export const bad = (ctx: PluginContext) => ctx.on('AT_MESAGE_CREATE', () => {});\nexport const env = process.env.TOKEN;\n`);
  const caught = await node([TSC, '-p', '.'], author);
  assert.match(caught.stdout, /index\.ts\(\d+,\d+\): error TS2345: Argument of type '"AT_MESAGE_CREATE"'/);
  assert.match(caught.stdout, /index\.ts\(\d+,\d+\): error TS\d+: Cannot find name 'process'/);
  await writeAuthorPlugin('1.0.0', ['messages.send'], false);

  const tested = await node(['--test', '--test-reporter=tap', 'greeter.test.ts'], author);
  assert.equal(tested.code, 0, tested.stdout + tested.stderr);
  assert.match(tested.stdout, /# pass 1/);

  const tgz = await pack(author);
  assert.ok(tgz.endsWith(`${PLUGIN}-1.0.0.tgz`));
  assert.deepEqual([...tarballFiles(tgz).keys()].sort(), ['index.ts', 'package.json']);
});

/** Runs `qqbot start` in the bot project; resolves once it prints the simulator's URL. */
async function startBot(lines: string[]): Promise<string> {
  const child = spawn(process.execPath, [join(project, 'node_modules/.bin/qqbot'), 'start'], { cwd: project, env: npmEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  bot = child;
  let buffer = '';
  const onData = (chunk: Buffer) => {
    buffer += chunk.toString();
    const parts = buffer.split('\n');
    buffer = parts.pop()!;
    lines.push(...parts);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const line = await waitForLine(lines, /simulator: (http:\/\/\S+)/, 60_000);
  return /simulator: (http:\/\/\S+)/.exec(line)![1]!;
}

async function waitForLine(lines: string[], pattern: RegExp, timeoutMs = 30_000, from = 0): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = lines.slice(from).find((l) => pattern.test(l));
    if (found) return found;
    if (bot?.exitCode !== null && bot?.exitCode !== undefined) throw new Error(`qqbot start exited (${bot.exitCode}):\n${lines.join('\n')}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${lines.slice(-40).join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function call(url: string, method: string, body?: unknown): Promise<any> {
  const response = await fetch(url, { method, ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }) });
  assert.ok(response.ok, `${method} ${url}: ${response.status} ${await response.clone().text()}`);
  return response.json();
}

/** Posts an @-message in the first guild and returns the bot's reply to it. */
async function ask(sim: string, content: string): Promise<string> {
  const posted = await call(`${sim}/_simulator/messages`, 'POST', { kind: 'guild_at', content }) as { id: string };
  const deadline = Date.now() + 20_000;
  for (;;) {
    const outbox = await call(`${sim}/_simulator/outbox`, 'GET') as Array<{ msg_id?: string; body: { content?: string } }>;
    const reply = outbox.find((entry) => entry.msg_id === posted.id);
    if (reply) return String(reply.body.content);
    if (Date.now() > deadline) throw new Error(`no reply to "${content}"`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function membersOfFirstGuild(sim: string): Promise<string[]> {
  const world = await call(`${sim}/_simulator/world`, 'GET') as { guilds: Array<{ members: Array<{ user: { id: string } }> }> };
  return world.guilds[0]!.members.map((m) => m.user.id);
}

test('an operator adds the packed plugin with qqbot plugin add; upgrades to a version asking for members.manage, which stays refused until approved', async () => {
  project = join(root, 'my-bot');
  await mkdir(join(project, 'plugins'), { recursive: true });
  await installTarballs(project, [sdkTgz, runtimeTgz], { pkg: { name: 'my-bot', version: '1.0.0', private: true } });
  await writeFile(join(project, 'bot.yaml'), [
    '# my bot: answers on the embedded simulator',
    'dataDir: ./data',
    'bots:',
    '  - name: demo',
    '    appId: "1020000001"',
    '    endpoint: simulator',
    '    # plugins this bot runs',
    '    plugins: {}',
    '',
  ].join('\n'));
  const qqbot = (...args: string[]) => node([join(project, 'node_modules/.bin/qqbot'), ...args], project);

  const added = await qqbot('plugin', 'add', join(packs, `${PLUGIN}-1.0.0.tgz`), '--yes');
  assert.equal(added.code, 0, added.stdout + added.stderr);
  assert.match(added.stdout, /installed qqbot-plugin-greeter 1\.0\.0/);
  assert.match(added.stdout, /events: +AT_MESSAGE_CREATE/);
  assert.match(added.stdout, /permissions: messages\.send/);
  assert.match(added.stdout, /granted: messages\.send/);
  const yaml = await readFile(join(project, 'bot.yaml'), 'utf8');
  assert.match(yaml, /^# my bot: answers on the embedded simulator$/m, 'bot.yaml keeps its comments');
  assert.match(yaml, /# plugins this bot runs\n {4}plugins:\n {6}qqbot-plugin-greeter: \{\}/);
  assert.match(await readFile(join(project, 'plugin-grants.yaml'), 'utf8'), /qqbot-plugin-greeter:\n {2}version: 1\.0\.0\n {2}permissions:\n {4}- messages\.send/);
  const clean = await qqbot('check');
  assert.equal(clean.code, 0, clean.stdout + clean.stderr);

  const lines: string[] = [];
  const sim = await startBot(lines);
  assert.equal(await ask(sim, 'there'), 'hello (v1.0.0), there');

  // the author publishes 1.1.0, which asks for members.manage to kick members
  await writeAuthorPlugin('1.1.0', ['messages.send', 'members.manage'], true);
  const tested = await node(['--test', 'greeter.test.ts'], author);
  assert.equal(tested.code, 0, tested.stdout + tested.stderr);
  await pack(author);

  const mark = lines.length;
  const upgraded = await qqbot('plugin', 'upgrade', join(packs, `${PLUGIN}-1.1.0.tgz`));
  assert.equal(upgraded.code, 0, upgraded.stdout + upgraded.stderr);
  assert.match(upgraded.stdout, /upgraded qqbot-plugin-greeter 1\.0\.0 → 1\.1\.0/);
  assert.match(upgraded.stdout, /permissions: \+members\.manage/);
  assert.match(upgraded.stdout, /not granted: members\.manage; it runs without until `qqbot plugin approve qqbot-plugin-greeter`/);
  // the running bot picks the new version up from node_modules, on the old grants
  await waitForLine(lines, /qqbot-plugin-greeter v2 live/, 30_000, mark);
  assert.ok(lines.slice(mark).some((l) => /asks for members\.manage, not granted/.test(l)));
  assert.equal(await ask(sim, 'again'), 'hello (v1.1.0), again');

  const target = (await membersOfFirstGuild(sim)).find((id) => id === '20000000000000002');
  assert.ok(target, 'the simulator seeds the admin user into the first guild');
  const refused = await ask(sim, `/kick ${target}`);
  assert.match(refused, /^refused: E_PERMISSION: plugin "qqbot-plugin-greeter" asks for permission "members\.manage" \(api\.kickMember\), which the operator has not granted; to grant it: qqbot plugin approve qqbot-plugin-greeter$/);
  assert.ok((await membersOfFirstGuild(sim)).includes(target), 'no request reached the simulator');

  const pending = await qqbot('check');
  assert.equal(pending.code, 1);
  assert.match(pending.stdout, /installed from npm, 1\.1\.0; granted at 1\.0\.0: messages\.send\n {4}\+ members\.manage {2}\(asked for, not granted\)/);
  assert.match(pending.stderr, /plugin qqbot-plugin-greeter 1\.1\.0 asks for members\.manage, not granted: it runs without until approved \(qqbot plugin approve qqbot-plugin-greeter\)/);

  const approvedAt = lines.length;
  const approved = await qqbot('plugin', 'approve', PLUGIN);
  assert.equal(approved.code, 0, approved.stdout + approved.stderr);
  assert.match(approved.stdout, /granted qqbot-plugin-greeter 1\.1\.0: members\.manage, messages\.send/);
  assert.match(approved.stdout, /\+ members\.manage/);
  await waitForLine(lines, /qqbot-plugin-greeter v3 live/, 30_000, approvedAt);
  assert.equal(await ask(sim, `/kick ${target}`), `kicked ${target}`);
  assert.ok(!(await membersOfFirstGuild(sim)).includes(target));
  const granted = await qqbot('check');
  assert.equal(granted.code, 0, granted.stdout + granted.stderr);

  bot!.kill('SIGTERM');
  await new Promise((resolve) => bot!.once('exit', resolve));
  assert.equal(bot!.exitCode, 0, lines.slice(-20).join('\n'));

  // remove: off every bot, grants withdrawn, uninstalled; bot.yaml keeps its comments
  const removed = await qqbot('plugin', 'remove', PLUGIN);
  assert.equal(removed.code, 0, removed.stdout + removed.stderr);
  assert.match(removed.stdout, /removed from bot\.yaml \(bots: demo\)/);
  const after = await readFile(join(project, 'bot.yaml'), 'utf8');
  assert.doesNotMatch(after, /qqbot-plugin-greeter/);
  assert.match(after, /# plugins this bot runs/);
  assert.doesNotMatch(await readFile(join(project, 'plugin-grants.yaml'), 'utf8'), /qqbot-plugin-greeter/);
  assert.ok(!existsSync(join(project, 'node_modules', PLUGIN)));
});
