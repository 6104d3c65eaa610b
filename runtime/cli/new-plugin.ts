import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { QQBotError } from '../errors.ts';
import { VERSION } from '../version.ts';

const NAME = /^[a-z][a-z0-9-]{0,62}$/;

/**
 * Scaffolds `plugins/NAME/` as a package ready to publish: a manifest with `files`, an entry, a
 * tsconfig that type-checks against the sandbox's globals only, and a test that runs the plugin in
 * a real sandbox through the installed `qqbot-runtime/testing`.
 */
export async function newPluginCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { dir: { type: 'string', default: 'plugins' } } });
  const name = positionals[0];
  if (name === undefined || !NAME.test(name)) {
    throw new QQBotError('E_PLUGIN_NAME', `expected a plugin name of lower-case letters, digits and dashes, starting with a letter (got ${name === undefined ? 'nothing' : `"${name}"`})`);
  }
  const dir = resolve(values.dir, name);
  if (existsSync(dir)) throw new QQBotError('E_PLUGIN_EXISTS', `${relative(process.cwd(), dir)} already exists; pick another name`, { dir });
  await mkdir(dir, { recursive: true });
  for (const [file, text] of Object.entries(files(name))) await writeFile(join(dir, file), text);
  const shown = relative(process.cwd(), dir);
  process.stdout.write([
    `created ${shown}/ (package.json, index.ts, ${name}.test.ts, tsconfig.json, README.md)`,
    `  try it:  send "/${name}" to the bot (console chat pane); a running \`qqbot start\` loads it on save,`,
    `           on every bot without a plugins list, or add \`${name}: {}\` under a bot's plugins`,
    `  test it: node --test ${shown}/${name}.test.ts`,
    `  publish: cd ${shown} && npm publish (README.md there says what to check first)`,
    '',
  ].join('\n'));
  return 0;
}

function files(name: string): Record<string, string> {
  const range = `^${VERSION}`;
  const manifest = {
    name: `qqbot-plugin-${name}`,
    version: '0.1.0',
    description: `qqbot-runtime plugin: answers /${name}`,
    keywords: ['qqbot-plugin', 'qqbot-runtime'],
    license: 'MIT',
    type: 'module',
    // published as TypeScript: the runtime bundles plugins itself (esbuild), Node never loads them
    main: 'index.ts',
    files: ['*.ts', '!*.test.ts', 'README.md'],
    scripts: { test: `node --test ${name}.test.ts`, typecheck: 'tsc -p .' },
    devDependencies: { 'qqbot-runtime': range, 'qqbot-sdk-types': range, typescript: '~5.9.3' },
    qqbot: {
      events: ['AT_MESSAGE_CREATE', 'GROUP_AT_MESSAGE_CREATE', 'C2C_MESSAGE_CREATE'],
      permissions: ['messages.send'],
      config: {
        type: 'object',
        properties: { greeting: { type: 'string', default: 'Hello' } },
        additionalProperties: false,
      },
    },
  };
  return {
    'package.json': `${JSON.stringify(manifest, null, 2)}\n`,
    // plugin code sees the sandbox's globals only: no @types/node, so `process` fails here, not at run time
    'tsconfig.json': `${JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        lib: ['ES2023'],
        types: ['qqbot-sdk-types/sandbox'],
        strict: true,
        noEmit: true,
        allowImportingTsExtensions: true,
        verbatimModuleSyntax: true,
      },
      include: ['*.ts'],
      exclude: ['*.test.ts', 'node_modules'],
    }, null, 2)}\n`,
    'README.md': readme(name),
    'index.ts': `import type { PluginContext, PluginEvent } from 'qqbot-sdk-types';

interface Config {
  greeting: string;
}

type MessageEvent = PluginEvent<'AT_MESSAGE_CREATE' | 'GROUP_AT_MESSAGE_CREATE' | 'C2C_MESSAGE_CREATE'>;

export default function setup(ctx: PluginContext<Config>): void {
  const command = async (event: MessageEvent) => {
    // guild messages start with the bot mention: "<@!123> /${name} …"
    const text = (event.data.content ?? '').replace(/<@!?\\w+>/g, '').trim();
    if (!text.startsWith('/${name}')) return;
    const rest = text.slice('/${name}'.length).trim();
    await event.reply(\`\${ctx.config.greeting}! \${rest ? \`You said: \${rest}\` : 'Try /${name} something'}\`);
  };
  ctx.on('AT_MESSAGE_CREATE', command);
  ctx.on('GROUP_AT_MESSAGE_CREATE', command);
  ctx.on('C2C_MESSAGE_CREATE', command);
}
`,
    [`${name}.test.ts`]: `import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { createTestHarness, type TestHarness } from 'qqbot-runtime/testing';

// Runs the plugin in a real sandbox against fake events and records what it sends.
let h: TestHarness;
before(async () => {
  h = await createTestHarness({ pluginDir: fileURLToPath(new URL('.', import.meta.url)), config: { greeting: 'Hi' } });
});
after(() => h.close());

test('answers /${name} in a group', async () => {
  const { outcome, replies } = await h.emit('GROUP_AT_MESSAGE_CREATE', { content: '/${name} ping' });
  assert.equal(outcome.status, 'ok');
  assert.equal(replies[0]?.body.content, 'Hi! You said: ping');
});

test('ignores other messages', async () => {
  const { replies } = await h.emit('C2C_MESSAGE_CREATE', { content: 'hello' });
  assert.deepEqual(replies, []);
});
`,
  };
}

function readme(name: string): string {
  return `# qqbot-plugin-${name}

A [qqbot-runtime](https://www.npmjs.com/package/qqbot-runtime) plugin: answers \`/${name} …\` in guild
channels (when @-mentioned), groups and C2C chats.

## Develop

\`\`\`sh
npm install          # qqbot-runtime (test helper), qqbot-sdk-types (types), typescript
npm test             # runs the plugin in a real sandbox, as \`qqbot start\` would
npm run typecheck    # against the sandbox's globals only: no process, require or Node APIs
\`\`\`

## Publish

1. \`package.json\`: pick the name (\`qqbot-plugin-…\` or \`@you/qqbot-plugin-…\`), version and description;
   \`files\` lists what is shipped (every \`.ts\` but the tests): keep it in step with your sources.
2. \`qqbot.permissions\` and \`qqbot.fetchHosts\` are what an operator is asked to grant: ask for no
   more than the plugin uses. A later version that asks for more runs without it until the operator
   runs \`qqbot plugin approve\`.
3. \`npm publish\`. Operators install it with \`npx qqbot plugin add qqbot-plugin-${name}\`.

## Use

\`\`\`sh
npx qqbot plugin add qqbot-plugin-${name} --bot demo
\`\`\`

Config (bot.yaml, under the bot's \`plugins\`): \`qqbot-plugin-${name}: { greeting: Hello }\`.
`;
}
