/**
 * InstanceSlot, in process, with stand-in sandboxes: events reach the isolate in arrival order and
 * at most `concurrentEvents` at a time; a new version takes over between two events, with the old
 * one's snapshot, and only if it is alive at the switch; an older version never undoes a newer one;
 * when the slot stops, what never entered an isolate is answered once, marked safe to deliver again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DispatchOutcome } from '../runtime/plugins/instance.ts';
import { InstanceSlot, type SwapResult } from '../runtime/plugins/sandbox/instance-slot.ts';
import type { PluginSandbox } from '../runtime/plugins/sandbox/plugin-sandbox.ts';

/** The part of PluginSandbox the slot uses; each event waits until the test finishes it. */
class FakeSandbox {
  readonly spec: { id: string; version: number; limits: { concurrentEvents: number } };
  batchLimit = 16;
  disposed = false;
  failure: { reason: string; message: string } | undefined;
  /** events as they entered, by their json */
  readonly entered: string[] = [];
  readonly #open = new Map<string, (o: DispatchOutcome) => void>();
  state: string | undefined;
  readonly restored: string[] = [];
  dieOnRestore = false;
  retired = 0;

  constructor(version: number, concurrentEvents = 16) {
    this.spec = { id: 'p', version, limits: { concurrentEvents } };
  }

  dispatch(items: ReadonlyArray<{ json: string }>): { entered: Promise<void>; outcomes: Array<Promise<DispatchOutcome>> } {
    const outcomes = items.map((item) => {
      this.entered.push(item.json);
      return new Promise<DispatchOutcome>((resolve) => this.#open.set(item.json, resolve));
    });
    return { entered: Promise.resolve(), outcomes };
  }

  /** the handler of event `json` has finished */
  finish(json: string): void {
    const resolve = this.#open.get(json);
    assert.ok(resolve, `${json} is running in version ${this.spec.version}`);
    this.#open.delete(json);
    resolve({ instanceId: 'p', version: this.spec.version, status: 'ok' });
  }

  get running(): number {
    return this.#open.size;
  }

  async snapshot(): Promise<string | undefined> {
    return this.state;
  }

  async restore(state: string): Promise<void> {
    this.restored.push(state);
    if (this.dieOnRestore) {
      this.failure = { reason: 'memory', message: 'restore blew the heap' };
      this.disposed = true;
    }
  }

  dispose(): void {
    this.disposed = true;
  }

  async retire(): Promise<void> {
    this.retired++;
    this.disposed = true;
  }
}

const asSandbox = (fake: FakeSandbox): PluginSandbox => fake as unknown as PluginSandbox;
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function makeSlot(first: FakeSandbox) {
  const answers: Array<{ rid: number; status: string; version: number; requeue: boolean }> = [];
  const lost: FakeSandbox[] = [];
  const slot = new InstanceSlot(
    asSandbox(first),
    (rid, outcome, sandbox) => answers.push({ rid, status: outcome.status, version: sandbox.spec.version, requeue: outcome.requeue === true }),
    (sandbox) => lost.push(sandbox as unknown as FakeSandbox),
    100,
  );
  const swaps: SwapResult[] = [];
  const swap = (next: FakeSandbox): void => slot.swap(asSandbox(next), (r) => swaps.push(r));
  return { slot, answers, lost, swaps, swap };
}

test('events enter in arrival order, never more than concurrentEvents at once, each answered once', async () => {
  const v1 = new FakeSandbox(1, 2);
  const { slot, answers } = makeSlot(v1);
  for (let rid = 1; rid <= 5; rid++) slot.dispatch(rid, `e${rid}`, 'AT_MESSAGE_CREATE');
  await settle();
  assert.deepEqual(v1.entered, ['e1', 'e2'], 'two in flight; the rest wait in the queue');
  v1.finish('e2');
  await settle();
  assert.deepEqual(v1.entered, ['e1', 'e2', 'e3']);
  v1.finish('e1');
  v1.finish('e3');
  await settle();
  v1.finish('e4');
  v1.finish('e5');
  await settle();
  assert.deepEqual(v1.entered, ['e1', 'e2', 'e3', 'e4', 'e5']);
  assert.deepEqual(answers.map((a) => a.rid), [2, 1, 3, 4, 5], 'answered as the handlers finished');
  assert.ok(answers.every((a) => a.status === 'ok' && !a.requeue));
});

test('a new version takes over between two events with the old one\'s snapshot; the old one retires', async () => {
  const v1 = new FakeSandbox(1);
  v1.state = '{"count":2}';
  const v2 = new FakeSandbox(2);
  const { slot, answers, swaps, swap } = makeSlot(v1);
  slot.dispatch(1, 'e1', 'AT_MESSAGE_CREATE');
  slot.dispatch(2, 'e2', 'AT_MESSAGE_CREATE');
  await settle();
  swap(v2);
  slot.dispatch(3, 'e3', 'AT_MESSAGE_CREATE');
  await settle();
  assert.deepEqual(swaps, [{ live: true }]);
  assert.deepEqual(v2.restored, ['{"count":2}']);
  assert.equal(slot.current, asSandbox(v2));
  assert.deepEqual(v1.entered, ['e1', 'e2']);
  assert.deepEqual(v2.entered, ['e3'], 'what arrived after the swap goes to the new version');
  assert.equal(v1.retired, 1);
  v1.finish('e1');
  v1.finish('e2');
  v2.finish('e3');
  await settle();
  assert.deepEqual(answers.map((a) => `${a.rid}@v${a.version}`), ['1@v1', '2@v1', '3@v2'], 'events already in the old version finish there');
});

test('a version that dies before the switch never goes live: the old one keeps serving', async () => {
  const v1 = new FakeSandbox(1);
  v1.state = '{}';
  const v2 = new FakeSandbox(2);
  v2.dieOnRestore = true;
  const { slot, swaps, swap, lost } = makeSlot(v1);
  swap(v2);
  await settle();
  assert.equal(swaps.length, 1);
  assert.equal(swaps[0]!.live, false);
  assert.match(swaps[0]!.live ? '' : swaps[0]!.reason, /version 2 failed before it went live: memory/);
  assert.equal(slot.current, asSandbox(v1));
  assert.equal(v1.retired, 0);
  assert.deepEqual(lost, []);
  slot.dispatch(1, 'e1', 'AT_MESSAGE_CREATE');
  await settle();
  assert.deepEqual(v1.entered, ['e1']);
});

test('an older version is refused, a newer one supersedes the version still waiting', async () => {
  const v2 = new FakeSandbox(2);
  const { slot, swaps, swap } = makeSlot(v2);
  const v1 = new FakeSandbox(1);
  swap(v1);
  assert.equal(swaps.length, 1, 'refused at once');
  assert.deepEqual(swaps[0], { live: false, reason: 'version 2 is newer' });
  assert.ok(v1.disposed);

  // v3's switch is under way (awaiting v2's snapshot) when v4 and then v5 arrive: v4 never runs
  const v3 = new FakeSandbox(3);
  const v4 = new FakeSandbox(4);
  const v5 = new FakeSandbox(5);
  swap(v3);
  swap(v4);
  swap(v5);
  await settle();
  assert.deepEqual(swaps.slice(1), [{ live: false, reason: 'superseded by version 5' }, { live: true }, { live: true }]);
  assert.ok(v4.disposed);
  assert.deepEqual(v4.restored, []);
  assert.equal(v3.retired, 1, 'v3 went live, then handed over to v5');
  assert.equal(slot.current, asSandbox(v5));
});

test('when the serving version dies, what waits is handed back once, safe to deliver again', async () => {
  const v1 = new FakeSandbox(1, 1);
  const { slot, answers, lost } = makeSlot(v1);
  for (let rid = 1; rid <= 3; rid++) slot.dispatch(rid, `e${rid}`, 'AT_MESSAGE_CREATE');
  await settle();
  assert.deepEqual(v1.entered, ['e1']);
  v1.failure = { reason: 'cpu', message: 'too much' };
  v1.disposed = true;
  slot.failed(asSandbox(v1));
  assert.deepEqual(lost, [v1]);
  assert.deepEqual(answers, [
    { rid: 2, status: 'dropped', version: 1, requeue: true },
    { rid: 3, status: 'dropped', version: 1, requeue: true },
  ]);
  slot.dispatch(4, 'e4', 'AT_MESSAGE_CREATE');
  assert.deepEqual(answers.at(-1), { rid: 4, status: 'unloaded', version: 1, requeue: true }, 'nothing enters a stopped slot');
  assert.deepEqual(v1.entered, ['e1']);
});

test('unload answers the queue as unloaded and retires the serving version', async () => {
  const v1 = new FakeSandbox(1, 1);
  const { slot, answers, swaps, swap } = makeSlot(v1);
  slot.dispatch(1, 'e1', 'AT_MESSAGE_CREATE');
  slot.dispatch(2, 'e2', 'AT_MESSAGE_CREATE');
  await settle();
  const v2 = new FakeSandbox(2);
  swap(v2); // waits behind e1 (no room: the pump is not running a switch until it comes back)
  await slot.unload(0);
  assert.deepEqual(answers, [{ rid: 2, status: 'unloaded', version: 1, requeue: true }]);
  assert.equal(v1.retired, 1);
  assert.ok(v2.disposed);
  assert.equal(swaps.length, 1);
  assert.equal(swaps[0]!.live, false);
});
