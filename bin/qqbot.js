#!/usr/bin/env node
// The runtime is TypeScript run through the tsx loader: no build step after `npm install`.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../runtime/cli.ts');
process.exitCode = await main(process.argv.slice(2));
