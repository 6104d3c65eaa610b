/**
 * Resume points of a local-sessions bot across restarts: written on a graceful stop, taken by the next
 * start. One file per bot under `{dataDir}/sessions/`.
 *
 * Several processes may run the same bot.yaml (and so share its data dir): the file is taken by renaming
 * it to a name of this process's own before reading, which only one process can do, so two processes
 * never resume the same sessions; the other one identifies. Writes go to a file of this process's own and
 * are renamed into place, so a reader never sees half a file.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from '../logging/logger.ts';
import { silentLogger } from '../logging/logger.ts';
import type { SavedSession } from './local.ts';

interface SessionFileBody {
  version: 1;
  appId: string;
  savedAt: number;
  sessions: SavedSession[];
}

export interface SessionFileOptions {
  /** the folder, e.g. `{dataDir}/sessions` */
  dir: string;
  bot: string;
  appId: string;
  logger?: Logger;
}

export class SessionFile {
  readonly path: string;
  readonly #options: SessionFileOptions;
  readonly #log: Logger;

  constructor(options: SessionFileOptions) {
    this.#options = options;
    this.path = join(options.dir, `${options.bot}.json`);
    this.#log = options.logger ?? silentLogger;
  }

  /** The sessions a predecessor saved, once: the file is gone afterwards. */
  async take(): Promise<SavedSession[]> {
    await this.#sweep();
    const taken = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.taken`;
    try {
      await rename(this.path, taken);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    try {
      const body = JSON.parse(await readFile(taken, 'utf8')) as Partial<SessionFileBody>;
      if (body.version !== 1 || body.appId !== this.#options.appId || !Array.isArray(body.sessions)) {
        this.#log.warn({ file: this.path }, 'ignoring saved sessions written for another bot or format');
        return [];
      }
      const sessions = body.sessions.filter(isSavedSession);
      this.#log.info({ file: this.path, shards: sessions.map((s) => s.shard), savedAgoMs: Date.now() - (body.savedAt ?? 0) }, 'resuming the sessions saved by the previous run');
      return sessions;
    } catch (error) {
      this.#log.warn({ file: this.path, err: (error as Error).message }, 'ignoring an unreadable saved-sessions file: identifying instead');
      return [];
    } finally {
      await rm(taken, { force: true });
    }
  }

  async save(sessions: SavedSession[]): Promise<void> {
    if (sessions.length === 0) return;
    await mkdir(this.#options.dir, { recursive: true });
    const body: SessionFileBody = { version: 1, appId: this.#options.appId, savedAt: Date.now(), sessions };
    const temp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(temp, JSON.stringify(body), { mode: 0o600 });
    await rename(temp, this.path);
    this.#log.info({ file: this.path, shards: sessions.map((s) => `${s.shard}@${s.seq}`) }, 'sessions saved for the next start');
  }

  // what a process killed halfway through a take or a save left behind
  async #sweep(): Promise<void> {
    const prefix = `${this.#options.bot}.json.`;
    const names = await readdir(this.#options.dir).catch(() => [] as string[]);
    for (const name of names) {
      const match = name.startsWith(prefix) ? /^(\d+)\.[0-9a-f]+\.(tmp|taken)$/.exec(name.slice(prefix.length)) : null;
      if (match && !alive(Number(match[1]))) await rm(join(this.#options.dir, name), { force: true });
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isSavedSession(value: unknown): value is SavedSession {
  const s = value as SavedSession;
  return typeof s === 'object' && s !== null && Number.isInteger(s.shard) && s.shard >= 0 && typeof s.sessionId === 'string' && s.sessionId !== ''
    && Number.isInteger(s.seq) && s.seq >= 0 && (s.settledAbove === undefined || (Array.isArray(s.settledAbove) && s.settledAbove.every((k) => typeof k === 'string')));
}
