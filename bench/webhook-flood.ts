/**
 * Webhook under a stranger's flood: 400 connections each declare a 1 MiB body, send all of it but
 * the last KiB, and hold. A real `qqbot start` process with one webhook bot; its RSS (from /proc)
 * before the flood is the baseline, the peak while the connections are held is the value.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rawPost } from '../test/support/raw-http.ts';
import { withRatio, type BenchRow } from './rows.ts';

const CONNECTIONS = 400;
const BODY = 1024 * 1024;
const HOLD_MS = 3000;

export async function benchWebhookFlood(): Promise<BenchRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'qqbot-bench-webhook-'));
  await writeFile(join(dir, 'bot.yaml'), [
    `pluginsDir: ${fileURLToPath(new URL('../test/fixtures/runtime/plugins', import.meta.url))}`,
    `dataDir: ${join(dir, 'data')}`,
    'bots:',
    '  - { name: hook, appId: "1020000001", endpoint: simulator, transport: { webhook: { port: 0, host: 127.0.0.1, path: /qq } }, plugins: { alpha: {} } }',
  ].join('\n'));
  const child = spawn(process.execPath, [fileURLToPath(new URL('../bin/qqbot.js', import.meta.url)), 'start', 'bot.yaml'], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const rssMb = async () => Number(/^VmRSS:\s+(\d+) kB/m.exec(await readFile(`/proc/${child.pid}/status`, 'utf8'))?.[1]) / 1024;
  try {
    const deadline = Date.now() + 60_000;
    while (!/bots running/.test(stdout) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    const port = Number(/"port":(\d+),"path":"\/qq"/.exec(stdout)?.[1]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const before = await rssMb();
    const forged = 'ab'.repeat(63) + '00';
    const attempts = Array.from({ length: CONNECTIONS }, () => rawPost(port, { 'X-Signature-Ed25519': forged, 'X-Signature-Timestamp': String(Math.floor(Date.now() / 1000)) }, BODY, BODY - 1024, '/qq'));
    let answered = 0;
    for (const attempt of attempts) void attempt.answer.then(() => answered++);
    let peak = before;
    const end = Date.now() + HOLD_MS;
    while (Date.now() < end) {
      peak = Math.max(peak, await rssMb());
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const answeredAtOnce = answered;
    for (const attempt of attempts) attempt.socket.destroy();
    return [
      withRatio({ name: `webhook RSS, ${CONNECTIONS} held 1 MiB bodies (baseline: before)`, value: peak, unit: 'MB', baseline: before }),
      { name: `webhook requests answered within ${HOLD_MS / 1000} s (of ${CONNECTIONS})`, value: answeredAtOnce, unit: 'requests' },
    ];
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}
