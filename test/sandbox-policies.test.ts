/**
 * The sandbox layer's pure parts, in process, with an injected clock where time matters: the
 * restart/quarantine policy, a plugin's backlog (bound in bytes, order kept when events come back),
 * and the deadline queue behind the per-event async tail.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { DispatchOutcome } from '../runtime/plugins/instance.ts';
import { DeadlineQueue } from '../runtime/plugins/sandbox/deadline-queue.ts';
import { InstanceQueue, type Queued, type SharedEvent } from '../runtime/plugins/sandbox/instance-queue.ts';
import { RestartPolicy } from '../runtime/plugins/sandbox/restart-policy.ts';

describe('restart policy', () => {
  const options = { backoffMs: { min: 100, max: 1000 }, quarantine: { restarts: 3, windowMs: 10_000 }, stableMs: 5000 };

  test('backoff doubles from min to max; more failures than allowed within the window quarantine', () => {
    let now = 0;
    const policy = new RestartPolicy(options, () => now);
    const delays = [];
    for (let i = 0; i < 3; i++) {
      const d = policy.failed();
      assert.equal(d.action, 'restart');
      if (d.action === 'restart') delays.push(d.delayMs);
      now += 1000;
    }
    assert.deepEqual(delays, [100, 200, 400]);
    assert.deepEqual(policy.failed(), { action: 'quarantine', failures: 4 });
  });

  test('the cap holds, old failures leave the window, and a stable period resets the backoff', () => {
    let now = 0;
    const policy = new RestartPolicy({ ...options, quarantine: { restarts: 100, windowMs: 10_000 } }, () => now);
    let last = 0;
    for (let i = 0; i < 8; i++) {
      const d = policy.failed();
      if (d.action === 'restart') last = d.delayMs;
      now += 100;
    }
    assert.equal(last, 1000, 'capped at max');
    now += 5000; // stable for stableMs
    assert.deepEqual(policy.failed(), { action: 'restart', delayMs: 100, failures: 9 }, 'backoff back to min, the failures still counted');
    now += 10_000;
    assert.deepEqual(policy.failed(), { action: 'restart', delayMs: 100, failures: 1 }, 'the window forgot the old failures');
  });

  test('reset() forgets everything (a new version is a fresh start)', () => {
    let now = 0;
    const policy = new RestartPolicy(options, () => now);
    for (let i = 0; i < 3; i++) policy.failed();
    policy.reset();
    assert.deepEqual(policy.failed(), { action: 'restart', delayMs: 100, failures: 1 });
  });
});

describe('plugin backlog', () => {
  let eid = 0;
  const event = (bytes: number): SharedEvent => ({ eid: ++eid, type: 'X', json: 'x'.repeat(bytes), bytes });
  const item = (bytes: number, log: string[], name: string): Queued => ({ event: event(bytes), resolve: (o: DispatchOutcome) => log.push(`${name}:${o.reason}`) });

  test('bounded in bytes: an event that would pass the bound is refused, the backlog is unchanged', () => {
    const q = new InstanceQueue(1000);
    const log: string[] = [];
    assert.equal(q.push(item(600, log, 'a')), true);
    assert.equal(q.push(item(300, log, 'b')), true);
    assert.equal(q.push(item(200, log, 'c')), false);
    assert.deepEqual([q.length, q.bytes], [2, 900]);
    // one event larger than the whole bound still goes in when nothing waits (it is not lost for being big)
    const empty = new InstanceQueue(100);
    assert.equal(empty.push(item(500, log, 'big')), true);
  });

  test('events taken out and put back return to their place, ahead of later arrivals, in arrival order', () => {
    const q = new InstanceQueue(1 << 20);
    const log: string[] = [];
    const items = ['a', 'b', 'c', 'd', 'e'].map((n) => item(10, log, n));
    for (const i of items) q.push(i);
    const taken = [q.shift()!, q.shift()!, q.shift()!]; // a, b, c went to the host
    // the host hands back c and a (never ran), in any order; b had side effects and is not requeued
    q.requeue(taken[2]!);
    q.requeue(taken[0]!);
    const order: Queued[] = [];
    for (let i = q.shift(); i; i = q.shift()) order.push(i);
    assert.deepEqual(order, [items[0], items[2], items[3], items[4]]);
    assert.equal(q.bytes, 0);
  });

  test('drain answers everything that waits, once', () => {
    const q = new InstanceQueue(1 << 20);
    const log: string[] = [];
    for (const n of ['a', 'b']) q.push(item(10, log, n));
    q.drain(() => ({ instanceId: 'x', version: 1, status: 'unloaded', reason: 'stopped' }));
    q.drain(() => ({ instanceId: 'x', version: 1, status: 'unloaded', reason: 'unloaded' }));
    assert.deepEqual(log, ['a:stopped', 'b:stopped']);
  });

  test('thousands of shifts and requeues keep the byte count exact', () => {
    const q = new InstanceQueue(1 << 30);
    const log: string[] = [];
    for (let i = 0; i < 5000; i++) q.push(item(1 + (i % 7), log, String(i)));
    let expected = q.bytes;
    for (let i = 0; i < 4000; i++) {
      const x = q.shift()!;
      expected -= x.event.bytes;
      if (i % 5 === 0) {
        q.requeue(x);
        expected += x.event.bytes;
      }
    }
    assert.equal(q.bytes, expected);
  });
});

describe('deadline queue', () => {
  test('expires only what is not done, in order, with one timer', async () => {
    const expired: string[] = [];
    const done = new Set<string>();
    const q = new DeadlineQueue<string>((item) => expired.push(item), (item) => done.has(item));
    const now = performance.now();
    q.push('a', now + 10);
    q.push('b', now + 20);
    q.push('c', now + 30);
    done.add('b');
    await new Promise((resolve) => setTimeout(resolve, 80));
    assert.deepEqual(expired, ['a', 'c']);
    q.push('d', performance.now() + 10);
    q.clear();
    await new Promise((resolve) => setTimeout(resolve, 40));
    assert.deepEqual(expired, ['a', 'c'], 'cleared before it fell due');
  });
});
