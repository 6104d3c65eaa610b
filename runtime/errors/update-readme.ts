/** `npm run error-codes`: rewrites README's error-code section from the registry. */
import { readFileSync, writeFileSync } from 'node:fs';
import { ERROR_CODES_END, ERROR_CODES_START, renderErrorCodes } from './codes.ts';

export function withErrorCodes(readme: string): string {
  const start = readme.indexOf(ERROR_CODES_START);
  const end = readme.indexOf(ERROR_CODES_END);
  if (start < 0 || end < start) throw new Error(`README has no ${ERROR_CODES_START} … ${ERROR_CODES_END} section`);
  return readme.slice(0, start) + renderErrorCodes() + readme.slice(end + ERROR_CODES_END.length);
}

if (import.meta.main) {
  const file = new URL('../../README.md', import.meta.url);
  writeFileSync(file, withErrorCodes(readFileSync(file, 'utf8')));
}
