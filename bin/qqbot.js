#!/usr/bin/env node
// Node 24+ runs the runtime's TypeScript itself (type stripping): no loader and no build step in a
// checkout. Only the plugin-host child loads isolated-vm; the supervisor forks it with --no-node-snapshot.
const { main } = await import('../runtime/cli.ts');
process.exitCode = await main(process.argv.slice(2));
