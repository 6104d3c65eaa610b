import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/qqbot.js', import.meta.url));

export interface QQBotProcess {
  child: ChildProcess;
  output: { stdout: string; stderr: string };
  /** the exit code (null when killed by a signal) */
  exited: Promise<number | null>;
  /** resolves once stdout matches `pattern`; fails if the process exits first or after `timeoutMs` */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** SIGKILL if still running */
  kill(): void;
}

/** A real `qqbot` process (`bin/qqbot.js ARGS`) in `cwd`, with only PATH and HOME from this environment. */
export function runQQBot(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): QQBotProcess {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk: Buffer) => (output.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output.stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = async (pattern: RegExp, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(output.stdout)) {
      assert.ok(Date.now() < deadline, `no ${pattern} in:\n${output.stdout}\n${output.stderr}`);
      assert.equal(child.exitCode, null, `exited early:\n${output.stdout}\n${output.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  return { child, output, exited, waitFor, kill };
}

/** Runs `qqbot ARGS` to its end (at most `timeoutMs`, then SIGKILL and a failed assertion). */
export async function qqbotExit(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = runQQBot(args, cwd, env);
  const timer = setTimeout(run.kill, timeoutMs);
  const code = await run.exited;
  clearTimeout(timer);
  assert.notEqual(run.child.signalCode, 'SIGKILL', `qqbot ${args.join(' ')} did not exit within ${timeoutMs} ms:\n${run.output.stdout}\n${run.output.stderr}`);
  return { code, ...run.output };
}
