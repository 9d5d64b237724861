// startMetricsServer: `/metrics` on loopback (unless told otherwise) from the configured registry.
import { createServer, type Server } from "node:http";
import { getState } from "./config.js";
import type { Registry } from "prom-client";

export interface MetricsServerOptions {
  /** Port to listen on (default 9464; 0 picks a free one). */
  port?: number;
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** Registry to serve (default: the configured one). */
  registry?: Registry;
}

export interface MetricsServer {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serve the Prometheus text format on `/metrics`. Resolves once listening.
 *
 * @example const server = await startMetricsServer({ port: 9464 });
 */
export async function startMetricsServer(options: MetricsServerOptions = {}): Promise<MetricsServer> {
  const host = options.host ?? "127.0.0.1";
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" || (path !== "/metrics" && path !== "/")) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    const registry = options.registry ?? getState().registry;
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      () => res.writeHead(500, { "content-type": "text/plain" }).end("metrics unavailable\n"),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 9464, host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : (options.port ?? 9464);
  const shown = host.includes(":") ? `[${host}]` : host;
  return {
    port,
    url: `http://${shown}:${port}/metrics`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
