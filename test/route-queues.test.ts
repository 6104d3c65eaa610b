/**
 * RouteQueues, in process, with attempts the test controls: one request at a time per route in
 * FIFO order, routes independent of each other, a rate-limited request going again first (nothing
 * dropped, order kept), giving up on a limit that does not lift, and requests that are aborted,
 * past their deadline or caught by close() rejected without being sent. SendWindows with an
 * injected clock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { majorKey, RouteQueues, SendWindows, type AttemptOutcome, type RateLimitedInfo, type ScheduleOptions } from '../runtime/openapi/route-queues.ts';

const errors: ScheduleOptions = {
  closedError: () => new Error('closed'),
  abortedError: () => new Error('aborted'),
  deadlineError: () => new Error('deadline'),
};

/** An attempt that waits until the test opens it; `log` records each start. */
function gated(log: string[], name: string) {
  let open!: (outcome: AttemptOutcome<string>) => void;
  const attempt = (): Promise<AttemptOutcome<string>> => {
    log.push(name);
    return new Promise((resolve) => (open = resolve));
  };
  return { attempt, open: (outcome: AttemptOutcome<string> = { done: true, value: name }) => open(outcome) };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const done = (value: string): Promise<AttemptOutcome<string>> => Promise.resolve({ done: true, value });

test('one route runs one request at a time, first in first out; other routes do not wait for it', async () => {
  const queues = new RouteQueues({ sendRate: false });
  const log: string[] = [];
  const a1 = gated(log, 'a1');
  const a2 = gated(log, 'a2');
  const b1 = gated(log, 'b1');
  const results = [
    queues.schedule('POST /channels/1/messages', a1.attempt, errors),
    queues.schedule('POST /channels/1/messages', a2.attempt, errors),
    queues.schedule('POST /channels/2/messages', b1.attempt, errors),
  ];
  await tick();
  assert.deepEqual(log, ['a1', 'b1'], 'a2 waits for a1; b1 runs beside it');
  assert.equal(queues.activeRoutes, 2);
  b1.open();
  a1.open();
  await tick();
  assert.deepEqual(log, ['a1', 'b1', 'a2']);
  a2.open();
  assert.deepEqual(await Promise.all(results), ['a1', 'a2', 'b1']);
  await tick();
  assert.equal(queues.activeRoutes, 0, 'idle routes are dropped');
  queues.close();
});

test('a rate-limited request goes again before the next one, and nothing is dropped', async () => {
  const limits: RateLimitedInfo[] = [];
  const queues = new RouteQueues({ sendRate: false, onRateLimited: (info) => limits.push(info) });
  const log: string[] = [];
  let firstTries = 0;
  const first = (): Promise<AttemptOutcome<string>> => {
    log.push('first');
    return Promise.resolve(++firstTries < 3 ? { done: false, retryAfterMs: 1 } : { done: true, value: 'first' });
  };
  const second = (): Promise<AttemptOutcome<string>> => {
    log.push('second');
    return done('second');
  };
  const results = await Promise.all([
    queues.schedule('POST /v2/groups/G/messages', first, errors),
    queues.schedule('POST /v2/groups/G/messages', second, errors),
  ]);
  assert.deepEqual(results, ['first', 'second']);
  assert.deepEqual(log, ['first', 'first', 'first', 'second']);
  assert.deepEqual(limits.map((l) => [l.route, l.hits, l.waitMs]), [['POST /v2/groups/G/messages', 1, 1], ['POST /v2/groups/G/messages', 2, 1]]);
  queues.close();
});

test('a limit that does not lift fails the request after `giveUp.after` tries; the next one still goes', async () => {
  const queues = new RouteQueues({ sendRate: false });
  let tries = 0;
  const stuck = (): Promise<AttemptOutcome<string>> => {
    tries++;
    return Promise.resolve({ done: false, retryAfterMs: 1, giveUp: { after: 2, error: () => new Error('quota exhausted') } });
  };
  const [outcome, next] = await Promise.allSettled([
    queues.schedule('POST /v2/users/U/messages', stuck, errors),
    queues.schedule('POST /v2/users/U/messages', () => done('next'), errors),
  ]);
  assert.equal(tries, 3);
  assert.equal(outcome.status === 'rejected' && (outcome.reason as Error).message, 'quota exhausted');
  assert.deepEqual(next, { status: 'fulfilled', value: 'next' });
  queues.close();
});

test('requests aborted, past their deadline or closed while waiting are rejected and never sent', async () => {
  const queues = new RouteQueues({ sendRate: false });
  const log: string[] = [];
  const sent = (name: string) => (): Promise<AttemptOutcome<string>> => {
    log.push(name);
    return done(name);
  };
  const head = gated(log, 'head');
  const blocker = gated(log, 'blocker');
  const route = 'POST /channels/9/messages';
  const running = queues.schedule(route, head.attempt, errors);
  const controller = new AbortController();
  const aborted = queues.schedule(route, sent('aborted'), { ...errors, signal: controller.signal });
  const late = queues.schedule(route, sent('late'), { ...errors, deadline: Date.now() + 5 });
  const blocking = queues.schedule(route, blocker.attempt, errors);
  const closed = queues.schedule(route, sent('closed'), errors);
  await tick();
  controller.abort();
  await assert.rejects(aborted, /aborted/);
  await new Promise((resolve) => setTimeout(resolve, 20)); // the late one's deadline passes while the head runs
  head.open();
  assert.equal(await running, 'head');
  await assert.rejects(late, /deadline/);
  await tick();
  assert.deepEqual(log, ['head', 'blocker']);
  queues.close();
  await assert.rejects(closed, /closed/);
  blocker.open();
  assert.equal(await blocking, 'blocker', 'a request already out is not failed by close()');
  await assert.rejects(queues.schedule(route, sent('after close'), errors), /closed/);
  assert.deepEqual(log, ['head', 'blocker'], 'none of the others was sent');
});

test('send windows: `messages` per `perMs` per key (plus a margin), keys apart', () => {
  const windows = new SendWindows({ messages: 2, perMs: 1000 });
  assert.equal(windows.take('c1', 0), 0);
  assert.equal(windows.take('c1', 10), 0);
  assert.equal(windows.take('c1', 20), 1080, 'the third waits until the first leaves the 1 100 ms window');
  assert.equal(windows.take('c2', 20), 0, 'another channel is not held up');
  assert.equal(windows.take('c1', 1100), 0);
  assert.equal(windows.take('c1', 1101), 9, 'the second send (at 10) leaves at 1 110');
});

test('majorKey: the channel, group or user a write acts on; reads have none', () => {
  assert.equal(majorKey('POST', '/channels/123/messages'), '/channels/123');
  assert.equal(majorKey('DELETE', '/v2/groups/G1/messages/9?x=1'), '/groups/G1');
  assert.equal(majorKey('POST', '/v2/users/U1/files'), '/users/U1');
  assert.equal(majorKey('GET', '/channels/123/messages'), undefined);
  assert.equal(majorKey('PUT', '/interactions/abc'), undefined);
});
