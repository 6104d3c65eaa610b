/**
 * The prelude (prelude/prelude.ts) as one script for `compileScript`: bundled by esbuild once per
 * process, synchronously, on first use. It is bundled from the file beside this one: the .ts source
 * in a checkout, the compiled .js in an installed package (dist/), where Node strips no types but
 * esbuild needs none stripped.
 */
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync, type Message } from 'esbuild';
import { QQBotError } from '../../errors.ts';

/** The prelude's name in stacks. */
export const PRELUDE_FILENAME = 'qqbot:prelude';

const here = fileURLToPath(import.meta.url);
const PRELUDE_ENTRY = join(dirname(here), 'prelude', `prelude${extname(here)}`);
/** The bundle's exports object, local to the wrapper below. */
const BUNDLE_NAME = '__qqbotPrelude';

let cached: string | undefined;

/**
 * The script; its completion value is the prelude's `entries` (boundary.ts PreludeEntries).
 * Throws E_PRELUDE_BUILD when the bundler fails (a broken install, not a plugin's fault).
 */
export function preludeScript(): string {
  cached ??= bundlePrelude(PRELUDE_ENTRY);
  return cached;
}

/** The bundling behind preludeScript(), uncached; `entry` is a parameter so a test can break it. */
export function bundlePrelude(entry: string): string {
  let code: string;
  try {
    const result = buildSync({
      entryPoints: [entry],
      bundle: true,
      write: false,
      format: 'iife',
      globalName: BUNDLE_NAME,
      platform: 'neutral',
      target: 'es2022',
      logLevel: 'silent',
    });
    code = result.outputFiles[0]?.text ?? '';
  } catch (error) {
    const errors = ((error as { errors?: Message[] }).errors ?? []).map((m) => m.text);
    const detail = errors.length > 0 ? errors.join('; ') : error instanceof Error ? error.message : String(error);
    throw new QQBotError('E_PRELUDE_BUILD', `cannot bundle the sandbox prelude (${entry}): ${detail}`, { entry, errors }, { cause: error });
  }
  // A function scope keeps the bundle's name off the isolate's global (esbuild's iife is strict).
  return `(function () {\n${code}\nreturn ${BUNDLE_NAME}.entries;\n})()`;
}
