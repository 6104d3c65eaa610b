/**
 * `qqbot-runtime/testing` behaves as `qqbot start` does: the same refusal of an unknown event name at
 * setup, the same word about a handler for an event the manifest does not declare, and only declared
 * events delivered.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestHarness } from 'qqbot-runtime/testing';
import { loadConfig } from '../runtime/config/index.ts';
import { createLogger } from '../runtime/logging/logger.ts';
import { Runtime } from '../runtime/runtime.ts';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'qqbot-harness-'));
});
after(() => rm(root, { recursive: true, force: true }));

async function plugin(name: string, events: string[], source: string): Promise<string> {
  const dir = join(root, 'plugins', name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: `qqbot-plugin-${name}`, version: '1.0.0', qqbot: { events, permissions: ['messages.send'] } }));
  await writeFile(join(dir, 'index.js'), source);
  return dir;
}

/** Runs the plugins folder on one simulator bot; returns what its log and console said. */
async function runOnce(plugins: string[], act: (runtime: Runtime) => Promise<void> = async () => {}): Promise<{ lines: Array<Record<string, unknown>>; runtime: Runtime }> {
  const file = join(root, 'bot.yaml');
  await writeFile(file, `pluginsDir: ./plugins\ndataDir: ./data\nbots:\n  - { name: demo, appId: "1020000001", endpoint: simulator, plugins: { ${plugins.map((p) => `${p}: {}`).join(', ')} } }\n`);
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ level: 'warn', pretty: false, destination: { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) } });
  const runtime = new Runtime({ config: loadConfig(file, { env: {} }), logger, console: false, metricsServer: false, watch: false });
  await runtime.start();
  try {
    await act(runtime);
  } finally {
    await runtime.stop();
  }
  return { lines, runtime };
}

test('ctx.on with an unknown event name fails setup, in the harness and in the runtime alike, listing the valid names', async () => {
  const dir = await plugin('typo', ['GROUP_AT_MESSAGE_CREATE'], "export default (ctx) => { ctx.on('NO_SUCH_EVENT', () => {}); };\n");
  const expected = /ctx\.on\("NO_SUCH_EVENT"\): no such event type; valid: .*C2C_MESSAGE_CREATE.*GROUP_AT_MESSAGE_CREATE/;
  await assert.rejects(createTestHarness({ pluginDir: dir }), expected);

  const { lines } = await runOnce(['typo']);
  const failure = lines.find((l) => l.plugin === 'typo' && l.msg === 'plugin not loaded');
  assert.ok(failure, JSON.stringify(lines));
  assert.match(String(failure.err), expected);
});

test('a handler for an undeclared event is reported at setup and never runs; the harness refuses to emit that event', async () => {
  const source = [
    'export default (ctx) => {',
    "  ctx.on('GROUP_AT_MESSAGE_CREATE', (e) => e.reply('group: ' + e.data.content));",
    "  ctx.on('C2C_MESSAGE_CREATE', (e) => e.reply('c2c: ' + e.data.content));",
    '};',
  ].join('\n');
  const dir = await plugin('halfdeclared', ['GROUP_AT_MESSAGE_CREATE'], source);
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  const h = await createTestHarness({ pluginDir: dir });
  try {
    await new Promise((resolve) => setImmediate(resolve));
    const said = /ctx\.on\("C2C_MESSAGE_CREATE"\): C2C_MESSAGE_CREATE is not in package\.json qqbot\.events, so this handler never runs/;
    assert.ok(h.logs.some((l) => l.level === 'warn' && said.test(String(l.args[0]))), JSON.stringify(h.logs));
    assert.ok(warnings.some((w) => said.test(w.message) && (w as Error & { code?: string }).code === 'QQBOT_UNDECLARED_EVENT'));
    await assert.rejects(h.emit('C2C_MESSAGE_CREATE', { content: 'hi' }), (error: Error & { code?: string }) => error.code === 'E_EVENT_NOT_DECLARED' && /not in qqbot-plugin-halfdeclared|not in halfdeclared/.test(error.message));
    const { replies } = await h.emit('GROUP_AT_MESSAGE_CREATE', { content: 'hi' });
    assert.equal(replies[0]?.body.content, 'group: hi');
  } finally {
    process.off('warning', onWarning);
    await h.close();
  }

  // the runtime: the same warning in its log, and a C2C message gets no answer from this plugin
  const { lines } = await runOnce(['halfdeclared'], async (runtime) => {
    const sim = runtime.simulator!;
    const group = sim.postMessage({ appId: '1020000001', kind: 'group_at', content: 'one' });
    const c2c = sim.postMessage({ appId: '1020000001', kind: 'c2c', content: 'two' });
    const deadline = Date.now() + 20_000;
    while (!sim.outbox().some((e) => e.msg_id === group.id)) {
      if (Date.now() > deadline) throw new Error('no group reply');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(sim.outbox().filter((e) => e.msg_id === c2c.id), []);
  });
  assert.ok(lines.some((l) => l.plugin === 'halfdeclared' && l.level === 40 && /C2C_MESSAGE_CREATE is not in package\.json qqbot\.events/.test(String(l.msg))), JSON.stringify(lines));
});
