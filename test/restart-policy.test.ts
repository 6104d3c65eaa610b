/**
 * RestartPolicy at its edges, with an injected clock (sandbox-policies.test.ts covers the doubling,
 * the cap and reset()): the quarantine window and the stable period each end exactly at their length,
 * and the default policy gives up on the sixth failure within ten minutes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_RESTART_POLICY, RestartPolicy } from '../runtime/plugins/sandbox/restart-policy.ts';

test('a failure exactly windowMs old has left the quarantine window', () => {
  const options = { backoffMs: { min: 10, max: 10 }, quarantine: { restarts: 1, windowMs: 1000 }, stableMs: 10_000 };
  const secondFailureAt = (at: number) => {
    let now = 0;
    const policy = new RestartPolicy(options, () => now);
    policy.failed();
    now = at;
    return policy.failed();
  };
  assert.deepEqual(secondFailureAt(999), { action: 'quarantine', failures: 2 }, 'still inside the window');
  assert.deepEqual(secondFailureAt(1000), { action: 'restart', delayMs: 10, failures: 1 });
});

test('exactly stableMs without a failure resets the backoff; a moment less does not', () => {
  let now = 0;
  const policy = new RestartPolicy({ backoffMs: { min: 100, max: 10_000 }, quarantine: { restarts: 100, windowMs: 1000 }, stableMs: 500 }, () => now);
  policy.failed();
  now = 499;
  assert.deepEqual(policy.failed(), { action: 'restart', delayMs: 200, failures: 2 });
  now = 999;
  assert.deepEqual(policy.failed(), { action: 'restart', delayMs: 100, failures: 3 });
});

test('the default policy: 1 s doubling, given up on at the sixth failure within ten minutes', () => {
  let now = 0;
  const policy = new RestartPolicy(DEFAULT_RESTART_POLICY, () => now);
  const delays: number[] = [];
  for (let i = 0; i < 5; i++) {
    const decision = policy.failed();
    assert.equal(decision.action, 'restart');
    if (decision.action === 'restart') delays.push(decision.delayMs);
    now += 30_000;
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16_000]);
  assert.deepEqual(policy.failed(), { action: 'quarantine', failures: 6 });
});
