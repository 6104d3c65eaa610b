import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { QQBotError } from '../errors.ts';

const NAME = /^[a-z][a-z0-9-]{0,62}$/;

/** Scaffolds `plugins/NAME/`: a manifest, an entry, and a test that runs it in a real sandbox. */
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
    `created ${shown}/ (package.json, index.ts, ${name}.test.ts)`,
    `  try it:  send "/${name}" to the bot (console chat pane); a running \`qqbot start\` loads it on save,`,
    `           on every bot without a plugins list, or add \`${name}: {}\` under a bot's plugins`,
    `  test it: node --test ${shown}/${name}.test.ts`,
    '',
  ].join('\n'));
  return 0;
}

function files(name: string): Record<string, string> {
  const manifest = {
    name: `qqbot-plugin-${name}`,
    version: '0.1.0',
    type: 'module',
    main: 'index.ts',
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
import { createTestHarness, type TestHarness } from 'qqbot-sdk-types/testing';

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
