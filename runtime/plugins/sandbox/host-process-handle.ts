/**
 * The main process's handle on one plugin-host child: fork with a scrubbed environment, the
 * batched channel to it, its heartbeat (a host that stops answering is killed), and its last words
 * (the instance it names before aborting on a catastrophic V8 error).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { extname } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { IpcChannel, messagesOf } from './ipc-channel.ts';
import { LAST_WORDS_FD, type FromHost, type LastWords, type ToHost } from './ipc.ts';

// .ts in a checkout, .js when installed from npm: the same extension as this module
const HOST_ENTRY = fileURLToPath(new URL(`./host-process${extname(fileURLToPath(import.meta.url))}`, import.meta.url));
const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Only what Node needs: the host must not inherit tokens from the environment. */
const ENV_ALLOW = ['PATH', 'HOME', 'TMPDIR', 'TMP', 'TEMP', 'LANG', 'TZ', 'NODE_ENV', 'NODE_OPTIONS', 'SYSTEMROOT'];
/** Starting Node is slow on a busy machine: before `ready` the heartbeat bound is at least this. */
const START_TIMEOUT_MS = 30_000;

export interface HostExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** the host named an instance before it aborted */
  lastWords: LastWords | undefined;
  /** killed here because it stopped answering */
  stuck: boolean;
}

export interface HostProcessOptions {
  /** no heartbeat for this long → killed (from start on; before `ready` at least 30 s) */
  heartbeatTimeoutMs: number;
  /** passed to the host: how long a retiring version may drain */
  retireGraceMs: number;
  onMessage(message: FromHost): void;
  /** after `ready` only; an exit before it rejects `spawnHost` */
  onExit(exit: HostExit): void;
  /** forked (before `ready`), for operators and tests */
  onSpawn?(pid: number): void;
  onStuck?(silentMs: number, ready: boolean): void;
}

export class HostProcess {
  readonly channel: IpcChannel<ToHost>;
  readonly #child: ChildProcess;
  readonly #options: HostProcessOptions;
  #ready = false;
  #lastBeat = Date.now();
  #stuck = false;
  /** its exit was reported: messages still in the pipe are not passed on */
  #gone = false;
  #lastWords: LastWords | undefined;
  #watch: NodeJS.Timeout;
  readonly #exited: Promise<void>;

  private constructor(options: HostProcessOptions) {
    this.#options = options;
    const env: NodeJS.ProcessEnv = {};
    for (const key of ENV_ALLOW) if (process.env[key] !== undefined) env[key] = process.env[key];
    env.QQBOT_HOST_RETIRE_GRACE_MS = String(options.retireGraceMs);
    env.QQBOT_HOST_HEARTBEAT_MS = String(Math.max(20, Math.min(500, options.heartbeatTimeoutMs / 5)));
    this.#child = fork(HOST_ENTRY, [], {
      cwd: PROJECT_ROOT,
      env,
      // isolated-vm requires it on Node 20+ (ivm#420); no loader: Node strips the types itself.
      execArgv: ['--no-node-snapshot'],
      serialization: 'json',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', 'pipe'],
    });
    this.channel = new IpcChannel<ToHost>(this.#child);
    this.#readLastWords();
    this.#exited = new Promise((resolve) => this.#child.once('exit', () => resolve()));
    this.#watch = setInterval(() => this.#checkHeartbeat(), Math.max(50, Math.min(1000, options.heartbeatTimeoutMs / 4)));
  }

  /** Forks a host and resolves once it says `ready`; rejects when it exits first. */
  static async spawn(options: HostProcessOptions): Promise<HostProcess> {
    const host = new HostProcess(options);
    const child = host.#child;
    if (child.pid !== undefined) options.onSpawn?.(child.pid);
    await new Promise<void>((resolve, reject) => {
      const onEarlyExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        clearInterval(host.#watch);
        reject(new Error(`plugin host exited during start (${signal ?? code})`));
      };
      child.once('exit', onEarlyExit);
      child.on('message', (raw: unknown) => {
        // read from the pipe after the exit: its deliveries are counted with the crash, so nothing it
        // asked for then (a reply) may take effect
        if (host.#gone) return;
        host.#lastBeat = Date.now();
        for (const message of messagesOf<FromHost>(raw)) {
          if (message.op === 'ready' && !host.#ready) {
            host.#ready = true;
            child.off('exit', onEarlyExit);
            child.once('exit', (code, sig) => host.#onExit(code, sig));
            resolve();
          } else if (message.op !== 'heartbeat') {
            options.onMessage(message);
          }
        }
      });
      child.on('error', () => undefined); // reported through 'exit'
    });
    host.#lastBeat = Date.now();
    return host;
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get alive(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Asks the host to stop (`stop` request sent by the caller), then waits; killed after `graceMs`. */
  async close(graceMs: number): Promise<void> {
    clearInterval(this.#watch);
    this.channel.flush();
    if (!this.alive) return;
    const killer = setTimeout(() => this.#child.kill('SIGKILL'), graceMs);
    await this.#exited;
    clearTimeout(killer);
  }

  disconnect(): void {
    this.channel.close();
    if (this.#child.connected) this.#child.disconnect();
  }

  kill(): void {
    this.#child.kill('SIGKILL');
  }

  #readLastWords(): void {
    const words = this.#child.stdio[LAST_WORDS_FD] as Readable | null;
    let text = '';
    words?.setEncoding('utf8');
    words?.on('data', (chunk: string) => {
      text += chunk;
      const line = text.split('\n')[0];
      if (line && text.includes('\n')) {
        try {
          this.#lastWords = JSON.parse(line) as LastWords;
        } catch {
          // not ours
        }
      }
    });
  }

  #onExit(code: number | null, signal: NodeJS.Signals | null): void {
    clearInterval(this.#watch);
    this.channel.close();
    // The last-words pipe may still hold the culprit's line: read it before reporting.
    const words = this.#child.stdio[LAST_WORDS_FD] as Readable | null;
    const report = (): void => {
      this.#gone = true;
      this.#options.onExit({ code, signal, lastWords: this.#lastWords, stuck: this.#stuck });
    };
    if (words && !words.readableEnded) words.once('end', report);
    else report();
  }

  // Also before `ready`: a host that hangs while starting must be caught too, or nothing ever completes.
  #checkHeartbeat(): void {
    if (this.#stuck || !this.alive) return;
    const limit = this.#ready ? this.#options.heartbeatTimeoutMs : Math.max(this.#options.heartbeatTimeoutMs, START_TIMEOUT_MS);
    const silentMs = Date.now() - this.#lastBeat;
    if (silentMs > limit) {
      this.#stuck = true;
      this.#options.onStuck?.(silentMs, this.#ready);
      this.#child.kill('SIGKILL');
    }
  }
}
