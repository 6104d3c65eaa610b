import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MetricsServerError } from './errors.ts';
import type { RuntimeMetrics } from './metrics.ts';

export interface MetricsServerOptions {
  metrics: RuntimeMetrics;
  /** 0 picks a free port (tests). */
  port: number;
  /** @defaultValue '127.0.0.1' */
  host?: string;
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/** Serves `GET /metrics` for Prometheus to scrape. Nothing else is exposed. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { metrics } = options;
  const host = options.host ?? '127.0.0.1';

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    metrics.text().then(
      (body) => {
        res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`metrics collection failed: ${String(err)}\n`);
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(new MetricsServerError('METRICS_LISTEN_FAILED', `metrics server cannot listen on ${host}:${options.port}: ${err.code ?? err.message}`, { host, port: options.port }, { cause: err }));
    });
    server.listen(options.port, host, () => resolve());
  });

  const port = (server.address() as AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        // Scrapers keep connections alive; drop them so shutdown is not held up by an idle socket.
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
