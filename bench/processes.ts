/**
 * OS processes for the end-to-end benches: spawn one and wait for a line, and read the CPU time of a
 * process and all its descendants from /proc (the runtime's plugin host is a child of its main process).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { once } from 'node:events';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

export interface Spawned {
  child: ChildProcess;
  /** everything the process printed so far (stdout and stderr) */
  output(): string;
  stop(): Promise<void>;
}

/** Starts `node args…` and resolves once its output matches `ready` (rejects if it exits first). */
export async function spawnNode(args: string[], ready: RegExp, options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Spawned & { match: RegExpMatchArray }> {
  const child = spawn(process.execPath, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const spawned: Spawned = {
    child,
    output: () => text,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(killer);
    },
  };
  const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')}: not ready within ${options.timeoutMs ?? 60_000} ms\n${text}`)), options.timeoutMs ?? 60_000);
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8');
      const m = ready.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(' ')} exited (${signal ?? code}) before it was ready\n${text}`));
    });
  });
  // keep draining so a chatty process never blocks on a full pipe
  return { ...spawned, match };
}

/** User + system CPU of `pid` and every process below it, in ms. */
export function treeCpuMs(pid: number): number {
  let ticks = 0;
  for (const p of descendants(pid)) ticks += ownTicks(p);
  return (ticks / TICKS_PER_SECOND) * 1000;
}

/** The pids of `pid` and all its descendants. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (!stat) continue;
    const list = children.get(stat.ppid) ?? [];
    list.push(Number(entry));
    children.set(stat.ppid, list);
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

function ownTicks(pid: number): number {
  const stat = readStat(pid);
  return stat ? stat.utime + stat.stime : 0;
}

function readStat(pid: number): { ppid: number; utime: number; stime: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // gone meanwhile
  }
  // the command name (field 2) may contain spaces and parentheses: split after its last ')'
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(fields[1]), utime: Number(fields[11]), stime: Number(fields[12]) };
}
