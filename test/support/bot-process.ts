/** `bin/qqbot.js start` as a real OS process: its output, its exit, its /metrics. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/qqbot.js', import.meta.url));

export interface BotProcess {
  child: ChildProcess;
  readonly pid: number;
  output: { stdout: string; stderr: string };
  exited: Promise<number | null>;
  /** resolves once the process printed "N/M bots running" */
  running(timeoutMs?: number): Promise<void>;
  /** the /metrics text (bot.yaml must configure `metrics: { port: 0 }`) */
  metrics(): Promise<string>;
  /** the console's `/api/state` (bot.yaml must configure `console: { port: 0 }`) */
  consoleState(): Promise<any>;
  kill(signal?: NodeJS.Signals): void;
}

export function startBotProcess(cwd: string, file = 'bot.yaml', env: NodeJS.ProcessEnv = {}, args: string[] = []): BotProcess {
  const child = spawn(process.execPath, [BIN, 'start', file, ...args], { cwd, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk: Buffer) => (output.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output.stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    get pid() {
      return child.pid!;
    },
    output,
    exited,
    async running(timeoutMs = 90_000) {
      const deadline = Date.now() + timeoutMs;
      while (!/\d+\/\d+ bots running/.test(output.stdout)) {
        assert.ok(Date.now() < deadline, `bot did not start:\n${output.stdout.slice(-4000)}\n${output.stderr}`);
        assert.equal(child.exitCode, null, `bot exited early:\n${output.stdout.slice(-4000)}\n${output.stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async metrics() {
      const url = /metrics: (http:\/\/\S+\/metrics)/.exec(output.stdout)?.[1];
      assert.ok(url, `no metrics URL printed:\n${output.stdout.slice(-2000)}`);
      return (await fetch(url)).text();
    },
    async consoleState() {
      const url = /console: (http:\/\/\S+)/.exec(output.stdout)?.[1];
      assert.ok(url, `no console URL printed:\n${output.stdout.slice(-2000)}`);
      return (await fetch(new URL('/api/state', url))).json();
    },
    kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/** Sum of a counter/gauge in Prometheus text, over all its label sets (or those matching `labels`). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}
