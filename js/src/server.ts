// startMetricsServer: `/metrics` on loopback (unless told otherwise) from the configured registry.
import { createServer, type Server } from "node:http";
import { getState } from "./config.js";
import { checkOptions, repr } from "./repr.js";
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

// A string port would make Node listen on a Unix socket of that name: refused, as any non-integer.
function portNumber(port: unknown): number {
  if (typeof port !== "number" || !Number.isInteger(port)) {
    const hint = typeof port === "string" ? `; Number(${repr(port)}) if it is read from the environment` : "";
    throw new TypeError(`failsight: startMetricsServer({ port }) must be an integer in 0..65535 (0 picks a free port), got ${repr(port)}${hint}`);
  }
  if (port < 0 || port > 65535) throw new RangeError(`failsight: startMetricsServer({ port }) must be in 0..65535, got ${repr(port)}`);
  return port;
}

function hostName(host: unknown): string {
  if (typeof host !== "string") throw new TypeError(`failsight: startMetricsServer({ host }) must be a string, got ${repr(host)}`);
  if (!host.trim()) {
    // "" would bind every interface: that has to be asked for by name.
    throw new RangeError(
      "failsight: startMetricsServer({ host }) is empty; give a host, e.g. 127.0.0.1 (loopback) or 0.0.0.0 (every interface)",
    );
  }
  if (/\s|\//.test(host)) {
    throw new RangeError(`failsight: startMetricsServer({ host }) must be a host name or address, got ${repr(host)}`);
  }
  return host;
}

/**
 * Serve the Prometheus text format on `/metrics`. Resolves once listening; a wrong option rejects
 * with a TypeError or RangeError naming it, and a busy port with the listen error.
 *
 * @example const server = await startMetricsServer({ port: 9464 });
 */
export async function startMetricsServer(options: MetricsServerOptions = {}): Promise<MetricsServer> {
  checkOptions("startMetricsServer()", options, ["port", "host", "registry"]);
  const port = portNumber(options.port ?? 9464);
  const host = hostName(options.host ?? "127.0.0.1");
  const given = options.registry;
  if (given !== undefined && typeof given?.metrics !== "function") {
    throw new TypeError(`failsight: startMetricsServer({ registry }) takes a prom-client Registry, got ${repr(given)}`);
  }
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
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  const shown = host.includes(":") ? `[${host}]` : host;
  return {
    port: bound,
    url: `http://${shown}:${bound}/metrics`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
