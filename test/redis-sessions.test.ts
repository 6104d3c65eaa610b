/**
 * The parts of Redis sessions, against a real redis-server started here: the distributed lock and its
 * fencing tokens, identify pacing shared by several connections, the cross-process dedupe and reply
 * ledger, the spread planner and the resume point.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import type { GatewayDispatch } from '../runtime/gateway/dispatch-event.ts';
import { CommittedSeq } from '../runtime/sessions/committed-seq.ts';
import { RedisConnection } from '../runtime/sessions/redis-connection.ts';
import { RedisEventDedupe } from '../runtime/sessions/redis-dedupe.ts';
import { RedisIdentifyThrottle } from '../runtime/sessions/redis-identify-throttle.ts';
import { LockError, RedisLock } from '../runtime/sessions/redis-lock.ts';
import { RedisReplyLedger } from '../runtime/sessions/redis-reply-ledger.ts';
import { planSpread } from '../runtime/sessions/spread.ts';
import { startRedis, type TestRedis } from './support/redis-server.ts';

async function withRedis(run: (redis: TestRedis, connect: (name?: string) => Promise<RedisConnection>) => Promise<void>): Promise<void> {
  const redis = await startRedis();
  const connections: RedisConnection[] = [];
  const connect = async (name = 'test'): Promise<RedisConnection> => {
    const connection = new RedisConnection({ url: redis.url, name });
    connections.push(connection);
    await connection.ready();
    return connection;
  };
  try {
    await run(redis, connect);
  } finally {
    await Promise.all(connections.map((c) => c.close()));
    await redis.stop();
  }
}

async function until(what: string, probe: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}

test('lock: one holder at a time; only the owner renews or releases; a dead owner\'s lock expires', async () => {
  await withRedis(async (_redis, connect) => {
    const a = new RedisLock({ redis: await connect('a') });
    const b = new RedisLock({ redis: await connect('b') });
    const first = await a.acquire('job', { ttlMs: 300 });
    assert.ok(first);
    assert.equal(first.valid, true);
    assert.equal(await b.acquire('job', { ttlMs: 300 }), undefined, 'held: a second acquire fails');
    assert.deepEqual(await b.holder('job'), { fence: first.fence, owner: first.owner });

    // another holder's token cannot release or renew it
    const forged = b.lease('job', 'someone-else', first.fence, { ttlMs: 300 }, 0);
    assert.equal(await forged.release(), false);
    assert.deepEqual(await b.holder('job'), { fence: first.fence, owner: first.owner }, 'still held');
    assert.equal(await b.lease('job', 'someone-else', first.fence, { ttlMs: 300 }, 0).renew(), false);

    // renewed past its TTL by its owner
    for (let i = 0; i < 4; i++) {
      await delay(120);
      assert.equal(await first.renew(), true);
    }
    assert.equal(await b.acquire('job', { ttlMs: 300 }), undefined);

    // the owner "dies": no more renewals; the lock expires and the next holder gets a larger fence
    await delay(400);
    assert.equal(first.valid, false, 'the local deadline passed too');
    const second = await b.acquireWait('job', { ttlMs: 300, timeoutMs: 2_000 });
    assert.ok(second);
    assert.ok(second.fence > first.fence, 'fencing tokens only grow');
    assert.equal(await first.renew(), false, 'the old owner learns it lost the lock');
    assert.equal(first.signal.aborted, true);
    assert.equal(await first.release(), false, 'and cannot release the new owner\'s lock');
    assert.equal(await second.release(), true);
    assert.equal(await b.holder('job'), undefined);
    await assert.rejects(a.acquire('job', { ttlMs: 300, owner: 'a@b' }), (e: LockError) => e.code === 'E_LOCK_OWNER');
  });
});

test('lock: fencing tokens stay above every earlier one after Redis restarts empty', async () => {
  await withRedis(async (redis, connect) => {
    const connection = await connect();
    const locks = new RedisLock({ redis: connection });
    const fences: number[] = [];
    for (let i = 0; i < 3; i++) {
      const lease = (await locks.acquire('shard', { ttlMs: 1_000 }))!;
      fences.push(lease.fence);
      await lease.release();
    }
    assert.ok(fences[1]! > fences[0]! && fences[2]! > fences[1]!);
    await redis.stop();
    await redis.start(); // no persistence: every key, fence counters included, is gone
    await connection.ready();
    await until('the connection to notice', () => connection.up);
    const after = await locks.acquire('shard', { ttlMs: 1_000 });
    assert.ok(after, 'the restarted Redis has no lock');
    assert.ok(after.fence > fences[2]!, `fence ${after.fence} after the restart > ${fences[2]} before it`);
  });
});

test('lock: withLock renews while the work runs, and reports a lock lost meanwhile', async () => {
  await withRedis(async (_redis, connect) => {
    const connection = await connect();
    const locks = new RedisLock({ redis: connection });
    const result = await locks.withLock('report', { ttlMs: 200 }, async (lease) => {
      await delay(700); // well past the TTL
      assert.equal(lease.signal.aborted, false);
      assert.equal(await locks.acquire('report', { ttlMs: 200 }), undefined, 'still held thanks to the renewals');
      return 'done';
    });
    assert.equal(result, 'done');
    assert.equal(await locks.holder('report'), undefined, 'released afterwards');

    await assert.rejects(
      locks.withLock('report', { ttlMs: 200 }, async (lease) => {
        await connection.client.set(locks.keys('report').lock, '1@intruder'); // someone else's now
        await until('the renewal to notice', () => lease.signal.aborted, 2_000);
      }),
      (e: LockError) => e.code === 'E_LOCK_LOST',
    );
    assert.deepEqual(await locks.holder('report'), { fence: 1, owner: 'intruder' }, 'the new holder\'s lock was not released');

    await assert.rejects(locks.withLock('report', { ttlMs: 200 }, async () => 'never'), (e: LockError) => e.code === 'E_LOCK_BUSY');
  });
});

test('identify pacing is shared: three connections together grant at most maxConcurrency per window; none while Redis is away', async () => {
  await withRedis(async (redis, connect) => {
    const windowMs = 300;
    const throttles = await Promise.all([1, 2, 3].map(async (n) => new RedisIdentifyThrottle({ redis: await connect(`p${n}`), key: 'qqbot:1:identify', maxConcurrency: 2, windowMs, marginMs: 0 })));
    const client = (await connect('clock')).client;
    const redisNow = async () => {
      const [s, us] = await client.time();
      return Number(s) * 1000 + Math.floor(Number(us) / 1000);
    };
    const grants: number[] = [];
    await Promise.all(throttles.flatMap((t) => [0, 1].map(async () => {
      const grant = await t.wait();
      grants.push(await redisNow());
      grant.sent();
    })));
    grants.sort((x, y) => x - y);
    assert.equal(grants.length, 6);
    // any window holds at most 2 grants (Redis' clock; a property of the grants, not a timing claim)
    for (let k = 2; k < grants.length; k++) assert.ok(grants[k]! - grants[k - 2]! >= windowMs - 5, `grant ${k} waited for a free slot: ${grants.join(', ')}`);

    await redis.stop();
    let granted = false;
    const waiting = throttles[0]!.wait().then(() => {
      granted = true;
    });
    await delay(500);
    assert.equal(granted, false, 'no identify without the shared budget');
    await redis.start();
    await waiting;
  });
});

const event = (t: string, id: string, messageId: string, fence: number): GatewayDispatch => ({ t, id, d: { id: messageId }, transport: 'websocket', shard: 0, receivedAt: 0, fence });

test('cross-process dedupe: a claim under a lost lease is taken over, a Stream entry\'s only by that entry, a finished event never runs again, Redis away lets events through', async () => {
  await withRedis(async (redis, connect) => {
    const connection = await connect();
    const dedupe = new RedisEventDedupe({ redis: connection, prefix: 'qqbot:1' });
    assert.equal(await dedupe.claim(event('AT_MESSAGE_CREATE', 'e1', 'm1', 10)), 'new');
    assert.equal(await dedupe.claim(event('AT_MESSAGE_CREATE', 'e1', 'm1', 10)), 'duplicate', 'same lease: a replay');
    assert.equal(await dedupe.claim(event('AT_MESSAGE_CREATE', 'e2', 'm1', 10)), 'duplicate', 'the message pushed again under another envelope id');
    assert.equal(await dedupe.claim(event('AT_MESSAGE_CREATE', 'e1', 'm1', 12)), 'taken-over', 'its first taker lost the shard before finishing');
    assert.equal(await dedupe.claim(event('AT_MESSAGE_CREATE', 'e1', 'm1', 11)), 'duplicate', 'an older lease cannot take it back');
    await dedupe.done(event('AT_MESSAGE_CREATE', 'e1', 'm1', 12));
    assert.equal(await dedupe.claim(event('AT_MESSAGE_CREATE', 'e1', 'm1', 99)), 'duplicate', 'finished: a duplicate under any lease');

    // Stream entries: the claim belongs to one copy of the event; only that copy's redeliveries take it over
    const copy = (fence: number) => event('C2C_MESSAGE_CREATE', 's1', 'sm1', fence);
    assert.equal(await dedupe.claim(copy(1), '100-0'), 'new');
    assert.equal(await dedupe.claim(copy(1), '100-0'), 'new', 'its holder asking again (an answer lost) still holds it');
    assert.equal(await dedupe.claim(copy(1), '101-0'), 'duplicate', 'a second entry of the event');
    assert.equal(await dedupe.claim(copy(2), '99-0'), 'duplicate', 'a redelivered copy cannot take over another copy\'s claim');
    assert.equal(await dedupe.claim(copy(2), '100-0'), 'taken-over', 'the entry delivered again after its consumer vanished');
    assert.equal(await dedupe.claim(copy(1), '100-0'), 'duplicate', 'its earlier delivery, come back, is stale');
    assert.equal(await dedupe.claim(copy(3)), 'duplicate', 'a claim without owner cannot take over an owned one');

    const webhook: GatewayDispatch = { t: 'GROUP_AT_MESSAGE_CREATE', id: 'w1', d: { id: 'wm1' }, transport: 'webhook', receivedAt: 0 };
    assert.equal(await dedupe.claim(webhook), 'new');
    assert.equal(await dedupe.claim(webhook), 'duplicate');

    await redis.stop();
    await until('the connection to notice', () => !connection.up);
    assert.equal(await dedupe.claim(event('AT_MESSAGE_CREATE', 'e3', 'm3', 12)), 'unknown');
  });
});

test('reply ledger: one process sends reply #n; a refused send can be claimed again; a sender that died mid-request is reported, resent only where the platform refuses repeats', async () => {
  await withRedis(async (redis, connect) => {
    const holdMs = 400;
    const connection = await connect('b');
    const [a, b] = [new RedisReplyLedger({ redis: await connect('a'), prefix: 'qqbot:1', holdMs }), new RedisReplyLedger({ redis: connection, prefix: 'qqbot:1', holdMs })];
    const channel = '/channels/c1/messages';
    const reply = { content: 'hi', msg_id: 'm1', msg_seq: 1 };

    // a sends; b, handling the event again, waits for a's answer and then does not send
    const sending = a.claimFor(channel, reply)!;
    assert.equal(await sending.take(), 'send');
    assert.equal(await sending.take(), 'send', 'a retry of the same request keeps its claim');
    const waiting = b.claimFor(channel, reply)!.take();
    await sending.sent();
    assert.equal(await waiting, 'duplicate', 'the other process handled the event again: its reply is not sent');
    assert.equal(await b.claimFor(channel, { ...reply, msg_seq: 2 })!.take(), 'send', 'a second reply is another pair');
    assert.equal(await b.claimFor(channel, { content: 'x', event_id: 'm1', msg_seq: 1 })!.take(), 'send', 'event_id and msg_id are separate spaces');
    assert.equal(a.claimFor(channel, { content: 'proactive' }), undefined, 'no passive id: nothing to claim');

    // refused by the platform: released, the next claim sends
    const refused = a.claimFor(channel, { content: 'r', msg_id: 'm2' })!;
    assert.equal(await refused.take(), 'send');
    await refused.released();
    assert.equal(await b.claimFor(channel, { content: 'r', msg_id: 'm2' })!.take(), 'send');

    // a takes claims and "dies" (never marks them): past the hold, b cannot know whether they went out
    assert.equal(await a.claimFor(channel, { content: 'd', msg_id: 'm3' })!.take(), 'send');
    const group = '/v2/groups/g1/messages';
    assert.equal(await a.claimFor(group, { content: 'd', msg_id: 'm4', msg_seq: 1 })!.take(), 'send');
    assert.equal(await b.claimFor(channel, { content: 'd', msg_id: 'm3' })!.take(), 'unknown', 'a guild channel would show a resend twice');
    assert.equal(await b.claimFor(group, { content: 'd', msg_id: 'm4', msg_seq: 1 })!.take(), 'send', 'a group refuses a repeated pair itself: resent');

    await redis.stop();
    await until('the connection to notice', () => !connection.up);
    assert.equal(await b.claimFor(channel, { content: 'down', msg_id: 'm5' })!.take(), 'send', 'no shard can move while Redis is away: the reply goes out');
  });
});

test('spread: even ±1, joins take their share from the fullest, leaves and dead holders free theirs, orphans are adopted', () => {
  const owners = (spec: string): Array<string | undefined> => [...spec].map((c) => (c === '.' ? undefined : c));
  // a cold start: everyone takes from the free shards, each from its own offset
  const cold = ['a', 'b', 'c'].map((self) => planSpread({ shardCount: 12, members: ['a', 'b', 'c'], self, owners: owners('............') }));
  assert.deepEqual(cold.map((p) => [p.target, p.acquire.length]), [[4, 4], [4, 4], [4, 4]]);
  // 13 shards: one process holds 5, and it is one that already holds the most
  assert.deepEqual(['a', 'b', 'c'].map((self) => planSpread({ shardCount: 13, members: ['a', 'b', 'c'], self, owners: owners('aaaaabbbbcccc') }).target), [5, 4, 4]);
  // c joins a b: a and b hold 6 each; each releases 2 for it, and c takes only free ones
  const join = { shardCount: 12, members: ['a', 'b', 'c'], owners: owners('aaaaaabbbbbb') };
  assert.deepEqual(planSpread({ ...join, self: 'a' }).release, [4, 5]);
  assert.deepEqual(planSpread({ ...join, self: 'b' }).release, [10, 11]);
  assert.deepEqual(planSpread({ ...join, self: 'c' }), { target: 4, acquire: [], release: [] }, 'it never takes a live holder\'s shard');
  // c's shards are free again (it left or its leases expired): a and b take two each
  const left = ['a', 'b'].map((self) => planSpread({ shardCount: 12, members: ['a', 'b'], self, owners: owners('aaaa....bbbb') }));
  assert.deepEqual(left.map((p) => [p.target, p.acquire.length]), [[6, 2], [6, 2]]);
  // a surplus is released only when someone can take it
  assert.deepEqual(planSpread({ shardCount: 4, members: ['a'], self: 'a', owners: owners('aaaa') }).release, []);
  assert.deepEqual(planSpread({ shardCount: 4, members: ['a', 'b'], self: 'a', owners: owners('aaa.') }).release, [2], 'only what the free shards do not cover');
  assert.deepEqual(planSpread({ shardCount: 4, members: ['a', 'b'], self: 'a', owners: owners('aa..') }).release, [], 'b takes the free ones');
  // x died: its leases expired but its heartbeat has not yet, so on paper x takes its share; once the
  // shards have stayed free a while, the least loaded process at its share adopts one per tick
  const orphan = { shardCount: 6, members: ['a', 'b', 'x'], owners: owners('aabbb.'), longFree: [5] };
  assert.deepEqual(planSpread({ ...orphan, self: 'x' }).acquire, [5], 'x itself takes it if alive');
  assert.deepEqual(planSpread({ ...orphan, self: 'a' }).acquire, [5], 'a (the least loaded at its share) adopts it');
  assert.deepEqual(planSpread({ ...orphan, self: 'b' }).acquire, []);
  assert.deepEqual(planSpread({ ...orphan, longFree: [], self: 'a' }).acquire, [], 'not before it has stayed free a while');
});

test('resume point: the last seq up to which every event is settled, and what finished above it', () => {
  const point = new CommittedSeq();
  point.reset(10);
  const events = [11, 12, 13, 14].map((s) => ({ t: 'AT_MESSAGE_CREATE', s, id: `e${s}`, d: { id: `m${s}` }, transport: 'websocket' as const, receivedAt: 0 }));
  for (const e of events) point.dispatched(e);
  assert.deepEqual(point.point(), { seq: 10, settledAbove: [] });
  point.settled(events[1]!);
  point.settled(events[3]!);
  assert.deepEqual(point.point(), { seq: 10, settledAbove: ['e:e12', 'm:AT_MESSAGE_CREATE:m12', 'e:e14', 'm:AT_MESSAGE_CREATE:m14'] }, '11 is still in a handler');
  point.settled(events[0]!);
  assert.deepEqual(point.point(), { seq: 12, settledAbove: ['e:e14', 'm:AT_MESSAGE_CREATE:m14'] });
  point.settled(events[2]!);
  assert.deepEqual(point.point(), { seq: 14, settledAbove: [] });
  point.settled(events[2]!); // settled twice: ignored
  point.reset(1); // a new session
  point.settled(events[0]!); // a late settle from the old session cannot move the new one
  assert.deepEqual(point.point(), { seq: 1, settledAbove: [] });
});
