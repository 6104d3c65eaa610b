import { performance } from 'node:perf_hooks';

/** One identify or resume as the gateway saw it. */
export interface SessionLogEntry {
  n: number;
  /** monotonic ms (`performance.now()` of the simulator's process): assert spacing on this, not the wall clock */
  at: number;
  /** ISO wall time, for humans */
  time: string;
  kind: 'identify' | 'resume';
  outcome: 'ok' | 'rejected';
  appId?: string;
  shard?: [number, number];
  intents?: number;
  sessionId?: string;
  /** close code when rejected */
  closeCode?: number;
  reason?: string;
}

const MAX_ENTRIES = 10_000;

export class SessionLog {
  #entries: SessionLogEntry[];
  #next: number;

  constructor(restored: SessionLogEntry[] = []) {
    this.#entries = restored.map((e) => ({ ...e }));
    this.#next = (this.#entries.at(-1)?.n ?? 0) + 1;
  }

  add(entry: Omit<SessionLogEntry, 'n' | 'at' | 'time'>): SessionLogEntry {
    const full: SessionLogEntry = { n: this.#next++, at: performance.now(), time: new Date().toISOString(), ...entry };
    this.#entries.push(full);
    if (this.#entries.length > MAX_ENTRIES) this.#entries.shift();
    return full;
  }

  entries(): SessionLogEntry[] {
    return this.#entries.map((e) => ({ ...e }));
  }
}
