/**
 * The globals a plugin's code runs with, beyond the ECMAScript built-ins: what the sandbox's prelude
 * installs, and nothing else (no `process`, `require`, `Buffer`, `fetch`, DOM or Node types).
 * A plugin's tsconfig loads it instead of `@types/node`, so code that would fail in the sandbox
 * fails to compile:
 *
 * ```json
 * { "compilerOptions": { "lib": ["ES2023"], "types": ["qqbot-sdk-types/sandbox"] } }
 * ```
 */
export {};

/** A host-managed timer's id. */
type TimerId = number;

declare global {
  /** Lines go to the runtime's log, tagged with the plugin; same as `ctx.logger`. */
  var console: {
    log(...args: unknown[]): void;
    info(...args: unknown[]): void;
    debug(...args: unknown[]): void;
    warn(...args: unknown[]): void;
    error(...args: unknown[]): void;
    trace(...args: unknown[]): void;
  };
  /** Runs on the host's clock; bounded per plugin (E_TIMER_LIMIT) and cleared when the plugin unloads. */
  function setTimeout<A extends unknown[]>(callback: (...args: A) => void, ms?: number, ...args: A): TimerId;
  function setInterval<A extends unknown[]>(callback: (...args: A) => void, ms?: number, ...args: A): TimerId;
  function clearTimeout(id: TimerId | undefined): void;
  function clearInterval(id: TimerId | undefined): void;
}
