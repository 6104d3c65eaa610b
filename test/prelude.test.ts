/**
 * The prelude as the host builds it (prelude-script.ts): bundled from prelude/prelude.ts, run in a
 * fresh isolate with the host globals of boundary.ts, it takes and deletes them, leaves no name of
 * its own on the global, and completes with exactly the entries boundary.ts lists. A prelude that
 * does not bundle is E_PRELUDE_BUILD.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ivm from 'isolated-vm';
import { QQBotError } from '../runtime/errors.ts';
import { ENTRY_NAMES, HOST_GLOBALS, INTERNAL_CAPABILITIES, type PreludeInit } from '../runtime/plugins/sandbox/prelude/boundary.ts';
import { bundlePrelude, PRELUDE_FILENAME, preludeScript } from '../runtime/plugins/sandbox/prelude-script.ts';

test('the prelude takes the host globals, completes with the listed entries, and setup reaches the host', async () => {
  const isolate = new ivm.Isolate({ memoryLimit: 16 });
  try {
    const context = await isolate.createContext();
    const calls: Array<[unknown, unknown, unknown]> = [];
    const init: PreludeInit = { bot: { name: 'b', appId: '1' }, config: {}, apiMethods: ['sendChannelMessage'], payloadBytes: 65_536, eventTypes: ['AT_MESSAGE_CREATE'], events: ['AT_MESSAGE_CREATE'] };
    await context.global.set(HOST_GLOBALS.call, new ivm.Callback((id: unknown, capability: unknown, json: unknown) => {
      calls.push([id, capability, json]);
      return null;
    }));
    await context.global.set(HOST_GLOBALS.report, new ivm.Callback(() => undefined, { ignored: true }));
    await context.global.set(HOST_GLOBALS.init, JSON.stringify(init));
    assert.equal(preludeScript(), preludeScript(), 'built once, then cached');
    const script = await isolate.compileScript(preludeScript(), { filename: PRELUDE_FILENAME });
    const entries = (await script.run(context, { reference: true, timeout: 1000 })) as ivm.Reference<Record<string, unknown>>;

    const globals = (await context.eval('Object.getOwnPropertyNames(globalThis)', { copy: true })) as string[];
    for (const name of Object.values(HOST_GLOBALS)) assert.ok(!globals.includes(name), `${name} deleted`);
    assert.equal(await context.eval('typeof __qqbotPrelude'), 'undefined', 'the bundle keeps its name to itself');
    assert.equal(await context.eval('typeof console.log + typeof setTimeout'), 'functionfunction');

    const names: string[] = [];
    for (const name of ENTRY_NAMES) {
      const entry = (await entries.get(name, { reference: true })) as ivm.Reference<unknown>;
      if (entry.typeof === 'function') names.push(name);
    }
    assert.deepEqual(names, [...ENTRY_NAMES]);

    // no plugin bundle was run: setup reports that through `$done`, as an error for seq 7
    const setup = (await entries.get('setup', { reference: true })) as ivm.Reference<(seq: number) => void>;
    await setup.apply(undefined, [7], { timeout: 1000 });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(calls.length, 1);
    const [id, capability, json] = calls[0]!;
    assert.equal(id, 7);
    assert.equal(capability, INTERNAL_CAPABILITIES.done);
    assert.match(String(json), /the plugin has no default export function/);
  } finally {
    isolate.dispose();
  }
});

test('a prelude that does not bundle is E_PRELUDE_BUILD, naming the bundler\'s complaint', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'qqbot-prelude-'));
  try {
    const broken = join(dir, 'prelude.ts');
    await writeFile(broken, 'export const entries = {;\n');
    assert.throws(() => bundlePrelude(broken), (error: unknown) => {
      assert.ok(error instanceof QQBotError);
      assert.equal(error.code, 'E_PRELUDE_BUILD');
      assert.match(error.message, /cannot bundle the sandbox prelude .*prelude\.ts\): /);
      assert.ok((error.context.errors as string[]).length > 0);
      return true;
    });
    assert.throws(() => bundlePrelude(join(dir, 'missing.ts')), { code: 'E_PRELUDE_BUILD' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
