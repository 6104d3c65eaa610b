/**
 * `npm run bench`: speed and memory figures, each beside a same-run baseline where one exists.
 * Numbers only; nothing here asserts (timings belong to the machine, not to the tests).
 */
import type { BenchRow } from './rows.ts';

const suites: Array<[string, () => Promise<BenchRow[]>]> = [
  ['event path', async () => (await import('./event-path.ts')).benchEventPath()],
  ['sandbox', async () => (await import('./sandbox.ts')).benchSandbox()],
  ['hot reload', async () => (await import('./hot-reload.ts')).benchHotReload()],
  ['storage', async () => (await import('./storage.ts')).benchStorage()],
  ['webhook flood', async () => (await import('./webhook-flood.ts')).benchWebhookFlood()],
  ['sessions', async () => (await import('./sessions.ts')).benchSessions()],
  ['stream path', async () => (await import('./stream-path.ts')).benchStreamPath()],
];

const format = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? '' : n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(2) : n.toFixed(3));

const table: string[][] = [['suite', 'measurement', 'value', 'unit', 'baseline', 'ratio']];
for (const [suite, run] of suites) {
  process.stderr.write(`bench: ${suite}…\n`);
  for (const row of await run()) {
    table.push([suite, row.name, format(row.value), row.unit, format(row.baseline), row.ratio === undefined ? '' : `${row.ratio.toFixed(2)}×`]);
  }
}
const widths = table[0]!.map((_, col) => Math.max(...table.map((line) => line[col]!.length)));
for (const [i, line] of table.entries()) {
  process.stdout.write(`${line.map((cell, col) => (col >= 2 ? cell.padStart(widths[col]!) : cell.padEnd(widths[col]!))).join('  ')}\n`);
  if (i === 0) process.stdout.write(`${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
}
process.exit(0);
