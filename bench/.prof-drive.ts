import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { spawnNode } from './processes.ts';
const ROOT = process.argv[2] ?? '/work/main/';
const out = process.argv[3] ?? '/tmp/prof/out';
const count = Number(process.argv[4] ?? 5000);
const targets = Number(process.argv[5] ?? 1000);
rmSync(out, { recursive: true, force: true });
const dir = mkdtempSync('/tmp/prof/run-');
const sim = await spawnNode([join(ROOT, 'bin/qqbot.js'), 'simulator', '--port', '0'], /OpenAPI (http:\/\/\S+)/);
const url = sim.match[1]!;
writeFileSync(join(dir, 'bot.yaml'), [`pluginsDir: ${join(ROOT, 'plugins')}`, `dataDir: ${join(dir, 'data')}`, 'log: { level: warn }', 'bots:',
  `  - { name: bench, appId: "1020000001", secret: simulator-secret, endpoint: "${url}", tokenEndpoint: "${url}/app/getAppAccessToken", shards: 1, plugins: { echo: {} } }`].join('\n') + '\n');
const rt = await spawnNode([join(ROOT, 'bin/qqbot.js'), 'start', join(dir, 'bot.yaml')], /bots running/, { cwd: dir, env: { ...process.env, NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${out}` } });
const call = async (m: string, p: string, b?: unknown) => (await (await request(`${url}/_simulator${p}`, { method: m as 'GET', headers: { 'content-type': 'application/json' }, ...(b ? { body: JSON.stringify(b) } : {}) })).body.json()) as any;
await new Promise((r) => setTimeout(r, 1000));
let since = 0;
const t0 = Date.now();
for (let round = 0; round < 2; round++) {
  await call('POST', '/messages/burst', { kind: 'guild_at', count, targets, content: `r${round}` });
  let got = 0, last = Date.now();
  while (Date.now() - last < 3000) {
    const e = await call('GET', `/outbox?since=${since}`);
    if (e.length) { since = e.at(-1).n; got += e.length; last = Date.now(); }
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log(`round ${round}: ${got} replies`);
  await new Promise((r) => setTimeout(r, 1100));
}
console.log('elapsed', Date.now() - t0);
await rt.stop();
await sim.stop();
console.log(rt.output().split('\n').filter((l) => /stopped|received/.test(l)).join('\n').slice(0, 500));
