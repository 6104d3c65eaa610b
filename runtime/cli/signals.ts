/**
 * Resolves on the first SIGINT/SIGTERM so the caller can shut down gracefully; a second signal
 * exits at once (a stuck shutdown must never trap the user).
 */
export function waitForShutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) {
        process.stderr.write(`\n${signal} again: exiting now\n`);
        process.exit(130);
      }
      received = true;
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
