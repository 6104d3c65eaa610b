import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ERROR_CODES, renderErrorCodes } from '../runtime/errors/codes.ts';
import { withErrorCodes } from '../runtime/errors/update-readme.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const REGISTRY = join('runtime', 'errors', 'codes.ts');

/** Every runtime source file but the registry itself, as [path, text]. */
function runtimeSources(): Array<[string, string]> {
  const files = readdirSync(join(ROOT, 'runtime'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join('runtime', f))
    .filter((f) => f !== REGISTRY);
  assert.ok(files.length > 50, `expected the runtime's sources, found ${files.length} files`);
  return files.map((f) => [f, readFileSync(join(ROOT, f), 'utf8')]);
}

// a code is a string literal (or starts a template string: `E_TIMEOUT: …`)
const CODE_LITERAL = /['"`]((?:E|CONSOLE|METRICS|SIMULATOR)_[A-Z0-9_]*[A-Z0-9])(?=['"`:])/g;

function usedCodes(): Map<string, string> {
  const used = new Map<string, string>();
  for (const [file, text] of runtimeSources()) {
    for (const match of text.matchAll(CODE_LITERAL)) if (!used.has(match[1]!)) used.set(match[1]!, file);
  }
  return used;
}

test('every error code used under runtime/ is registered in ERROR_CODES', () => {
  const used = usedCodes();
  assert.ok(used.size > 50, `found only ${used.size} codes; is the scan broken?`);
  const missing = [...used].filter(([code]) => !Object.hasOwn(ERROR_CODES, code)).map(([code, file]) => `${code} (${file})`);
  assert.deepEqual(missing, [], 'add these to runtime/errors/codes.ts');
});

test('every registered error code is used under runtime/', () => {
  const used = usedCodes();
  const unused = Object.keys(ERROR_CODES).filter((code) => !used.has(code));
  assert.deepEqual(unused, [], 'remove these from runtime/errors/codes.ts, or use them');
});

test('every code has a one-line meaning', () => {
  for (const [code, meaning] of Object.entries(ERROR_CODES)) {
    assert.ok(meaning.length > 5 && !meaning.includes('\n'), code);
  }
});

test("README's error-code section is the rendered registry", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.ok(readme.includes(renderErrorCodes()), 'README is stale: run npm run error-codes');
  assert.equal(withErrorCodes(readme), readme);
  for (const code of Object.keys(ERROR_CODES)) assert.ok(readme.includes(`| \`${code}\` |`), code);
});
