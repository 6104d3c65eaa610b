import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StorageBackends } from '../runtime/bot/storage-backends.ts';
import { silentLogger } from '../runtime/logging/logger.ts';
import type { KeyValueStore } from '../runtime/plugins/storage/key-value-store.ts';

const WRITER = fileURLToPath(new URL('./fixtures/storage/writer.ts', import.meta.url));
const NS = { bot: 'crash', plugin: 'writer' };

/** What each key must hold: the generation of its last finished write, or undefined once deleted. */
type Model = Map<string, number | undefined>;

/** Starts the writer, lets it write for `writeMs`, then kills it with SIGKILL mid-stream. */
async function writeThenKill(dataDir: string, round: number, writeMs: number): Promise<{ finished: string[][]; inFlight: string[] | undefined }> {
  const logFile = join(dataDir, `..`, `${basename(dataDir)}-round${round}.log`);
  const child = spawn(process.execPath, [WRITER, dataDir, String(round), logFile], { stdio: ['ignore', 'ignore', 'inherit'] });
  const closed = new Promise<void>((resolve, reject) => {
    child.on('close', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`writer exited on its own (${code})`))));
  });
  const deadline = Date.now() + 60_000;
  while (!(await readFile(logFile, 'utf8').catch(() => '')).startsWith('ready')) {
    assert.ok(Date.now() < deadline, 'the writer never got ready');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await new Promise((resolve) => setTimeout(resolve, writeMs));
  child.kill('SIGKILL');
  await closed;
  // pair each `begin` with its `done`; a trailing `begin` is the operation the kill interrupted
  const finished: string[][] = [];
  let inFlight: string[] | undefined;
  for (const line of (await readFile(logFile, 'utf8')).split('\n')) {
    if (line.startsWith('begin ')) inFlight = line.split(' ').slice(1);
    else if (line === 'done') {
      finished.push(inFlight!);
      inFlight = undefined;
    }
  }
  await rm(logFile);
  return { finished, inFlight };
}

function apply(model: Model, [op, key, gen]: string[]): void {
  model.set(key!, op === 'delete' ? undefined : Number(gen));
}

/** Every key holds a whole value (its checksum matches) of the generation the model allows. */
async function verify(store: KeyValueStore, model: Model, inFlight: string[] | undefined): Promise<void> {
  const keys = new Set([...model.keys(), ...(await store.keys(NS))]);
  for (const key of keys) {
    const text = await store.get(NS, key);
    let gen: number | undefined;
    if (text !== undefined) {
      const value = JSON.parse(text) as { key: string; gen: number; pad: string; check: string };
      assert.equal(value.key, key);
      assert.equal(createHash('sha256').update(`${value.key}|${value.gen}|${value.pad}`).digest('hex'), value.check, `${key}: torn value`);
      gen = value.gen;
    }
    const old = model.get(key);
    if (inFlight?.[1] === key) {
      const next = inFlight[0] === 'delete' ? undefined : Number(inFlight[2]);
      assert.ok(gen === old || gen === next, `${key}: ${gen} is neither the old (${old}) nor the new (${next}) value`);
      model.set(key, gen);
    } else {
      assert.equal(gen, old, `${key}: expected generation ${old}`);
    }
  }
  const usage = await store.usage(NS);
  assert.equal(usage.keys, (await store.keys(NS)).length, 'the key count matches the keys');
}

test('kill -9 during storage writes, start again: nothing left over, every key readable, each value old or new, never torn', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'qqbot-storage-crash-'));
  const model: Model = new Map();
  let interrupted = 0;
  let writes = 0;
  const ROUNDS = 10;
  for (let round = 1; round <= ROUNDS; round++) {
    const { finished, inFlight } = await writeThenKill(dataDir, round, 80 + round * 23);
    for (const op of finished) apply(model, op);
    writes += finished.length;
    if (inFlight) interrupted++;
    // start again the way the runtime does, and look
    const backends = new StorageBackends({ dataDir, logger: silentLogger });
    await verify(await backends.open({ kind: 'file' }, 'crash'), model, inFlight);
    await backends.close();
    assert.deepEqual(await readdir(dataDir), ['storage.sqlite'], 'after a clean close only the database remains');
  }
  console.log(`# storage crash: ${ROUNDS} kills, ${writes} operations, ${interrupted} with a write in flight, ${model.size} keys verified`);
  assert.ok(interrupted >= 1, 'at least one kill landed during a write');
});

test('the old JSON file store is moved into the database once, its interrupted-write leftovers swept', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'qqbot-storage-import-'));
  const legacy = join(dataDir, 'storage');
  await mkdir(join(legacy, 'main'), { recursive: true });
  await mkdir(join(legacy, 'other'), { recursive: true });
  await writeFile(join(legacy, 'main', 'dice.json'), JSON.stringify({ 'stats:u1': '{"rolls":3}', best: '12' }));
  await writeFile(join(legacy, 'main', '%40acme%2Fqqbot-plugin-x.json'), JSON.stringify({ k: '"v"' }));
  await writeFile(join(legacy, 'main', 'dice.json.4242.0a1b2c3d.tmp'), '{"stats:u1": "torn');
  await writeFile(join(legacy, 'other', 'broken.json'), '{"not": 1}');

  const backends = new StorageBackends({ dataDir, logger: silentLogger });
  const store = await backends.open({ kind: 'file' }, 'main');
  assert.equal(await store.get({ bot: 'main', plugin: 'dice' }, 'stats:u1'), '{"rolls":3}');
  assert.deepEqual(await store.usage({ bot: 'main', plugin: 'dice' }), { keys: 2, bytes: 'stats:u1'.length + '{"rolls":3}'.length + 'best'.length + 2 });
  assert.equal(await store.get({ bot: 'main', plugin: '@acme/qqbot-plugin-x' }, 'k'), '"v"');
  // a write after the move survives the next start: the move happens once
  await store.set({ bot: 'main', plugin: 'dice' }, 'best', '18');
  await backends.close();
  assert.deepEqual((await readdir(legacy, { recursive: true })).sort(), ['other', 'other/broken.json'], 'moved files and leftovers gone; an unreadable file kept');

  // a crash between the move's commit and the file's removal: the file is back, but it was moved before
  await mkdir(join(legacy, 'main'));
  await writeFile(join(legacy, 'main', 'dice.json'), JSON.stringify({ 'stats:u1': '{"rolls":3}', best: '12' }));
  const again = new StorageBackends({ dataDir, logger: silentLogger });
  const reopened = await again.open({ kind: 'file' }, 'main');
  assert.equal(await reopened.get({ bot: 'main', plugin: 'dice' }, 'best'), '18', 'not overwritten by a second import');
  assert.deepEqual((await readdir(legacy, { recursive: true })).sort(), ['other', 'other/broken.json']);
  await again.close();
});
