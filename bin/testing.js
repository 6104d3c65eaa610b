// `qqbot-runtime/testing`: the sources in a checkout, the compiled dist/ when installed from npm
// (see qqbot.js beside this file). Types: dist/runtime/testing.d.ts.
import { existsSync } from 'node:fs';

const source = new URL('../runtime/testing.ts', import.meta.url);
const testing = await import(existsSync(source) ? source.href : '../dist/runtime/testing.js');

export const { createTestHarness } = testing;
