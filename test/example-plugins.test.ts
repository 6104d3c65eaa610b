/**
 * The example plugins, tested the way a plugin author would: through the runtime's test helper (`qqbot-runtime/testing`),
 * which bundles each plugin and runs it in a real sandbox (plugin-host child process + isolate).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createTestHarness, type TestHarness } from 'qqbot-runtime/testing';

const pluginDir = (name: string) => fileURLToPath(new URL(`../plugins/${name}`, import.meta.url));

describe('echo', () => {
  let h: TestHarness;
  before(async () => {
    h = await createTestHarness({ pluginDir: pluginDir('echo'), config: { prefix: 'echo: ' } });
  });
  after(() => h.close());

  test('answers guild @-messages, DMs, group and C2C messages through the right endpoint', async () => {
    const at = await h.emit('AT_MESSAGE_CREATE', { id: 'm1', channel_id: 'c9', content: '<@!bot1> hello there' });
    assert.equal(at.outcome.status, 'ok');
    assert.deepEqual(at.replies, [{ path: '/channels/c9/messages', body: { content: 'echo: hello there', msg_type: 0, msg_id: 'm1', msg_seq: 1 } }]);

    const dm = await h.emit('DIRECT_MESSAGE_CREATE', { guild_id: 'dmg', content: 'psst' });
    assert.equal(dm.replies[0]?.path, '/dms/dmg/messages');
    assert.equal(dm.replies[0]?.body.content, 'echo: psst');

    const group = await h.emit('GROUP_AT_MESSAGE_CREATE', { group_openid: 'G1', content: ' 你好 ' });
    assert.equal(group.replies[0]?.path, '/v2/groups/G1/messages');
    assert.equal(group.replies[0]?.body.content, 'echo: 你好');

    const c2c = await h.emit('C2C_MESSAGE_CREATE', { author: { user_openid: 'U7' }, content: 'hi' });
    assert.equal(c2c.replies[0]?.path, '/v2/users/U7/messages');
    assert.match(String(c2c.replies[0]?.body.msg_id), /^c2c-msg-/);
  });

  test('an empty message gets no answer, and a platform refusal is logged as the plugin\'s error', async () => {
    const empty = await h.emit('AT_MESSAGE_CREATE', { content: '<@!bot1>' });
    assert.equal(empty.calls.length, 0);
    h.respond('POST', /^\/channels\/refuse\/messages$/, { status: 403, body: { code: 304028, message: 'may only reply to messages that @ the bot' } });
    const refused = await h.emit('AT_MESSAGE_CREATE', { channel_id: 'refuse', content: 'x' });
    assert.equal(refused.replies.length, 1);
    assert.equal(refused.outcome.status, 'error');
    assert.ok(h.errors.some((e) => e.includes('304028')), h.errors.join('\n'));
  });
});

describe('dice', () => {
  let h: TestHarness;
  before(async () => {
    h = await createTestHarness({ pluginDir: pluginDir('dice'), config: { maxDice: 3 } });
  });
  after(() => h.close());

  test('rolls within the configured limits and keeps per-user stats in storage', async () => {
    const first = await h.emit('GROUP_AT_MESSAGE_CREATE', { content: '/roll 2d6', author: { member_openid: 'ALICE' } });
    const text = String(first.replies[0]?.body.content);
    const m = /^🎲 2d6: (\d) \+ (\d) = (\d+)$/.exec(text);
    assert.ok(m, text);
    const sum = Number(m[3]);
    assert.equal(Number(m[1]) + Number(m[2]), sum);
    assert.ok(sum >= 2 && sum <= 12);
    assert.deepEqual(await h.stored('stats:ALICE'), { rolls: 1, total: sum, best: sum });

    await h.emit('GROUP_AT_MESSAGE_CREATE', { content: '/roll d20', author: { member_openid: 'ALICE' } });
    const stats = (await h.stored('stats:ALICE')) as { rolls: number; total: number };
    assert.equal(stats.rolls, 2);
    const answer = await h.emit('GROUP_AT_MESSAGE_CREATE', { content: '/roll stats', author: { member_openid: 'ALICE' } });
    assert.equal(answer.replies[0]?.body.content, `rolls: 2, total: ${stats.total}, best: ${Math.max(sum, stats.total - sum)}`);
    const bob = await h.emit('C2C_MESSAGE_CREATE', { content: '/roll stats', author: { user_openid: 'BOB' } });
    assert.equal(bob.replies[0]?.body.content, 'no rolls yet');
  });

  test('config limits and bad input are answered, not thrown; other messages are ignored', async () => {
    const tooMany = await h.emit('AT_MESSAGE_CREATE', { content: '<@!bot> /roll 4d6' });
    assert.equal(tooMany.replies[0]?.body.content, 'at most 3 dice with 2–100 sides');
    const bad = await h.emit('AT_MESSAGE_CREATE', { content: '/roll lots' });
    assert.equal(bad.replies[0]?.body.content, 'usage: /roll 2d6');
    const other = await h.emit('AT_MESSAGE_CREATE', { content: 'hello' });
    assert.equal(other.calls.length, 0);
    assert.equal(h.errors.length, 0, h.errors.join('\n'));
  });

  test('an invalid config section is refused before the plugin runs', async () => {
    await assert.rejects(createTestHarness({ pluginDir: pluginDir('dice'), config: { maxDice: 0 } }), { code: 'E_PLUGIN_CONFIG', message: /^config\.maxDice: must be >= 1 \(config of plugin "dice"\)$/ });
  });
});

describe('hitokoto (net.fetch)', () => {
  let site: Server;
  let port: number;
  let h: TestHarness;
  const seen: string[] = [];
  before(async () => {
    site = createServer((req, res) => {
      seen.push(`${req.headers.host} ${req.url}`);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 1, hitokoto: '人生若只如初见', from: '木兰词', from_who: '纳兰性德' }));
    });
    site.listen(0, '127.0.0.1');
    await once(site, 'listening');
    port = (site.address() as AddressInfo).port;
    // the allow-listed host, served on loopback: the operator's escape hatch lets fetch reach it
    h = await createTestHarness({
      pluginDir: pluginDir('hitokoto'),
      config: { endpoint: `http://v1.hitokoto.cn:${port}/` },
      resolveHosts: { 'v1.hitokoto.cn': '127.0.0.1' },
      allowPrivateAddresses: true,
    });
  });
  after(async () => {
    await h.close();
    site.closeAllConnections();
    await new Promise<void>((resolve) => site.close(() => resolve()));
  });

  test('fetches a quote from the allow-listed host and replies with it', async () => {
    const r = await h.emit('AT_MESSAGE_CREATE', { content: '<@!bot> /quote' });
    assert.equal(r.outcome.status, 'ok');
    assert.equal(r.replies[0]?.body.content, '「人生若只如初见」 —— 纳兰性德, 木兰词');
    assert.deepEqual(seen, [`v1.hitokoto.cn:${port} /?encode=json`]);
  });

  test('without the escape hatch, an allow-listed host that resolves to loopback is refused at connect time', async () => {
    const guarded = await createTestHarness({
      pluginDir: pluginDir('hitokoto'),
      config: { endpoint: `http://v1.hitokoto.cn:${port}/` },
      resolveHosts: { 'v1.hitokoto.cn': '127.0.0.1' },
    });
    try {
      const before = seen.length;
      const r = await guarded.emit('AT_MESSAGE_CREATE', { content: '/quote' });
      assert.equal(r.replies[0]?.body.content, 'no quote right now, try again later');
      assert.equal(seen.length, before);
      assert.ok(guarded.logs.some((l) => l.level === 'warn' && JSON.stringify(l.args).includes('v1.hitokoto.cn resolves to a loopback address')), JSON.stringify(guarded.logs));
    } finally {
      await guarded.close();
    }
  });

  test('a host off the allow-list is refused inside the sandbox and the plugin answers gracefully', async () => {
    const off = await createTestHarness({ pluginDir: pluginDir('hitokoto'), config: { endpoint: `http://127.0.0.1:${port}/` } });
    try {
      const before = seen.length;
      const r = await off.emit('C2C_MESSAGE_CREATE', { content: '/quote' });
      assert.equal(r.replies[0]?.body.content, 'no quote right now, try again later');
      assert.equal(seen.length, before);
      assert.ok(off.logs.some((l) => l.level === 'warn' && JSON.stringify(l.args).includes('allow-list')), JSON.stringify(off.logs));
    } finally {
      await off.close();
    }
  });
});
