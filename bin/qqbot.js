#!/usr/bin/env node
// In a checkout Node runs the runtime's TypeScript itself (type stripping, no build step); installed
// from npm, where Node strips no types under node_modules, the package carries the compiled dist/.
// Only the plugin-host child loads isolated-vm; the supervisor forks it with --no-node-snapshot.
import { existsSync } from 'node:fs';

const source = new URL('../runtime/cli.ts', import.meta.url);
const { main } = await import(existsSync(source) ? source.href : '../dist/runtime/cli.js');
process.exitCode = await main(process.argv.slice(2));
