import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff, backoffDelay } from '../runtime/time/backoff.ts';
import { sleep, sleepUnlessAborted } from '../runtime/time/sleep.ts';

test('sleep resolves after its time', async () => {
  assert.equal(await sleep(1), undefined);
  assert.equal(await sleepUnlessAborted(1, new AbortController().signal), true);
});

test("an abort rejects sleep with the signal's reason, before or during the wait", async () => {
  const reason = new Error('stopped');
  await assert.rejects(sleep(10, AbortSignal.abort(reason)), (err) => err === reason);
  const during = new AbortController();
  const waiting = sleep(60_000, during.signal);
  during.abort(reason);
  await assert.rejects(waiting, (err) => err === reason);
  // without a reason, the platform's AbortError
  const plain = new AbortController();
  const plainWait = sleep(60_000, plain.signal);
  plain.abort();
  await assert.rejects(plainWait, { name: 'AbortError' });
});

test('sleepUnlessAborted wakes early on abort and says so', async () => {
  const controller = new AbortController();
  const waiting = sleepUnlessAborted(60_000, controller.signal);
  controller.abort(new Error('closing'));
  assert.equal(await waiting, false);
  assert.equal(await sleepUnlessAborted(60_000, AbortSignal.abort()), false);
});

test('backoff ceilings double from baseMs and stop at maxMs', () => {
  const policy = { baseMs: 100, maxMs: 1_000, spread: [1, 1] as const };
  assert.deepEqual([1, 2, 3, 4, 5, 6, 50].map((n) => backoffDelay(n, policy)), [100, 200, 400, 800, 1_000, 1_000, 1_000]);
  // attempts below 1 count as the first; huge attempts do not overflow
  assert.equal(backoffDelay(0, policy), 100);
  assert.equal(backoffDelay(10_000, policy), 1_000);
});

test('jitter stays inside the spread of the ceiling (injected random)', () => {
  const equal = { baseMs: 1_000, maxMs: 60_000 };
  assert.equal(backoffDelay(1, equal, () => 0), 500);
  assert.equal(backoffDelay(1, equal, () => 0.999_999), 1_000);
  assert.equal(backoffDelay(3, equal, () => 0.5), 3_000);
  const around = { baseMs: 1_000, maxMs: 30_000, spread: [0.75, 1.25] as const };
  assert.equal(backoffDelay(2, around, () => 0), 1_500);
  assert.equal(backoffDelay(2, around, () => 0.999_999), 2_500);
  assert.equal(backoffDelay(9, around, () => 0.999_999), 37_500, 'the spread applies to the capped ceiling');
  for (let i = 0; i < 200; i++) {
    const ms = backoffDelay(4, equal);
    assert.ok(ms >= 4_000 && ms <= 8_000, String(ms));
  }
});

test('Backoff counts attempts and starts over after reset', () => {
  const b = new Backoff({ minMs: 100, maxMs: 400 });
  assert.deepEqual([b.next(() => 0.999_999), b.next(() => 0.999_999), b.next(() => 0.999_999), b.next(() => 0)], [100, 200, 400, 200]);
  assert.equal(b.attempts, 4);
  b.reset();
  assert.equal(b.attempts, 0);
  assert.equal(b.next(() => 0), 50);
});

test('backoff grows exponentially with jitter inside [ceiling/2, ceiling], capped, and resets', () => {
  const b = new Backoff({ minMs: 100, maxMs: 1000 });
  const lows = [0, 0, 0, 0, 0, 0].map(() => b.next(() => 0));
  assert.deepEqual(lows, [50, 100, 200, 400, 500, 500]);
  b.reset();
  const highs = [0, 0, 0, 0, 0].map(() => b.next(() => 1));
  assert.deepEqual(highs, [100, 200, 400, 800, 1000]);
  b.reset();
  for (let i = 0; i < 50; i++) {
    const delay = b.next();
    assert.ok(delay >= 50 && delay <= 1000, `delay ${delay} in range`);
  }
  assert.equal(b.attempts, 50);
  // never zero even with a zero minimum: no tight loop
  assert.ok(new Backoff({ minMs: 0 }).next(() => 0) >= 1);
});
