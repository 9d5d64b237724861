// make demo-js: the bundled fault server on loopback, a mixed workload through the real openai
// client (every failure class, streaming, retries, images, video jobs), /metrics served, and the
// summary table `failsight demo` prints. No API key, no network. With --forever or --duration:
// steady traffic with incidents (continuous.mjs) for Prometheus and Grafana; --help for usage.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { Registry } from "prom-client";
import { configure, instrumentOpenAI, startMetricsServer } from "../dist/index.js";
import { runCase } from "../test/cases.mjs";
import { parseExposition, repoRoot, startFaultServer } from "../test/helpers.mjs";
import { incidents, runContinuous, Schedule } from "./continuous.mjs";

const spec = JSON.parse(readFileSync(resolve(repoRoot, "tests", "conformance", "cases.json"), "utf8"));

/** The same plain-text summary as the Python demo's. */
export function renderTable(text, namespace = "genai") {
  const samples = parseExposition(text);
  const lines = [];
  const section = (title, rows) => {
    lines.push(title);
    if (!rows.length) lines.push("  (none)");
    const width = Math.max(0, ...rows.map(([label]) => label.length));
    for (const [label, value] of rows) lines.push(`  ${label.padEnd(width)}  ${value.toFixed(0).padStart(8)}`);
    lines.push("");
  };
  const totals = (metric, key) => {
    const sums = new Map();
    for (const s of samples) if (s.name === `${namespace}_${metric}`) sums.set(key(s.labels), (sums.get(key(s.labels)) ?? 0) + s.value);
    return sums;
  };
  const byCount = (m) => [...m].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const byName = (m) => [...m].sort((a, b) => a[0].localeCompare(b[0]));
  const requests = totals("requests_total", (l) => l.failure_class);
  const total = [...requests.values()].reduce((a, b) => a + b, 0);
  section(`Logical requests: ${total.toFixed(0)}`, ["none", "hard", "soft", "silent"].filter((c) => requests.has(c)).map((c) => [c, requests.get(c)]));
  section("Failures by class and reason", byCount(totals("failures_total", (l) => `${l.failure_class.padEnd(6)}  ${l.reason}`)));
  section("Retries by reason", byCount(totals("retries_total", (l) => l.reason)));
  section("Tokens by type", byName(totals("tokens_total", (l) => l.token_type)));
  section("Video jobs by outcome", byName(totals("video_jobs_total", (l) => l.status)));
  const wasted = totals("wasted_tokens_total", (l) =>
    l.token_type === "input" || l.token_type === "output" ? `${l.failure_class.padEnd(6)}  ${l.reason}` : "");
  wasted.delete(""); // reasoning and cached input are parts of output and input
  section("Wasted tokens (input + output) by class and reason", byCount(wasted));
  section("Content filters by category, stage, severity", byName(totals("content_filter_total", (l) => `${l.category}  ${l.stage}  ${l.severity}`)));
  const spent = [...totals("cost_usd_total", () => "").values()].reduce((a, b) => a + b, 0);
  const lost = [...totals("wasted_cost_usd_total", () => "").values()].reduce((a, b) => a + b, 0);
  lines.push(spent ? `Spend: $${spent.toFixed(6)} in all, $${lost.toFixed(6)} wasted (${Math.round((100 * lost) / spent)}%)`
    : "Spend: not priced (the Node.js package does not price usage)");
  return lines.join("\n").trimEnd() + "\n";
}

const USAGE = `usage: npm run demo -- [--forever | --duration SECONDS] [--rate PER_SECOND]
                       [--incident-every SECONDS] [--incident-length SECONDS]
                       [--port PORT] [--addr ADDR]

Run the openai client against the bundled fault-injection server (Python, FAILSIGHT_PYTHON or
../.venv), serve /metrics and print what failsight recorded: by default one pass over the
conformance cases; with --forever or --duration, steady traffic over their call sites, models and
operations, with incidents, for Prometheus and Grafana (deploy/prometheus.yml scrapes port 9464).

  --forever                 run until Ctrl-C
  --duration SECONDS        run this long
  --rate PER_SECOND         requests per second, on average, jittered (default 4)
  --incident-every SECONDS  one incident per this many seconds (default 1380: 23 minutes)
  --incident-length SECONDS how long each incident lasts, at the end of its slot (default 1080)
  --no-incidents            steady traffic only
  --port PORT               /metrics port (default 9464 for a continuous run, else a free one;
                            0 picks a free one; FAILSIGHT_DEMO_PORT sets the default)
  --addr ADDR               /metrics address (default 127.0.0.1)
  -h, --help                this help

Ctrl-C (or the end of --duration) prints the summary table.
`;

function fail(message, code = 2) {
  process.stderr.write(code === 2 ? `${message}\n\n${USAGE}` : `${message}\n`);
  process.exit(code);
}

function readOptions(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        help: { type: "boolean", short: "h" }, forever: { type: "boolean" }, duration: { type: "string" },
        rate: { type: "string" }, "incident-every": { type: "string" }, "incident-length": { type: "string" },
        "no-incidents": { type: "boolean" }, port: { type: "string" }, addr: { type: "string" },
      },
    }));
  } catch (error) {
    fail(`demo: ${error.message}`);
  }
  const number = (name, fallback, ok) => {
    if (values[name] === undefined) return fallback;
    const n = Number(values[name]);
    if (values[name].trim() === "" || !ok(n)) fail(`demo: --${name} ${values[name]} is not valid`);
    return n;
  };
  if (values.forever && values.duration !== undefined) fail("demo: --forever and --duration exclude each other");
  const continuous = Boolean(values.forever || values.duration !== undefined);
  const positive = (n) => Number.isFinite(n) && n > 0;
  const options = {
    help: values.help,
    continuous,
    duration: number("duration", undefined, positive),
    rate: number("rate", 4, positive),
    every: number("incident-every", 1380, positive),
    length: number("incident-length", 1080, positive),
    incidents: !values["no-incidents"],
    port: number("port", Number(process.env.FAILSIGHT_DEMO_PORT ?? (continuous ? 9464 : 0)),
      (n) => Number.isInteger(n) && n >= 0 && n <= 65535),
    host: values.addr ?? "127.0.0.1",
  };
  if (!continuous && ["rate", "incident-every", "incident-length", "no-incidents"].some((k) => values[k] !== undefined)) {
    fail("demo: --rate and the incident options go with --forever or --duration");
  }
  if (continuous && options.incidents && !(options.length < options.every)) {
    fail("demo: an incident must be shorter than its slot (--incident-length < --incident-every)");
  }
  return options;
}

const options = readOptions(process.argv.slice(2));
if (options.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

const registry = new Registry();
configure({ registry });
instrumentOpenAI();
let metrics;
try {
  metrics = await startMetricsServer({ port: options.port, host: options.host });
} catch (error) {
  // Busy most often because the Python demo serves the same port.
  fail(`demo: cannot serve /metrics on ${options.host}:${options.port} (${error.code ?? error.message}); ` +
    "stop what serves it (failsight demo uses 9464 too) or give --port", 1);
}
const server = await startFaultServer(spec.server).catch(async (error) => {
  await metrics.close();
  throw error;
});
try {
  console.log(`failsight demo (Node.js): fault server ${server.baseURL}, metrics ${metrics.url}`);
  if (options.continuous) {
    const schedule = options.incidents ? new Schedule(options.every, options.length, incidents(spec.cases)) : undefined;
    const until = options.duration === undefined ? "until Ctrl-C" : `for ${options.duration} s`;
    console.log(`${options.rate} requests/s on average ${until}; ${schedule ? schedule.describe() : "no incidents"}`);
    // SIGINT ends the run as the end of --duration does, so test/helpers.mjs's handler (kill the
    // fault server, then this process) must not run. A terminal's Ctrl-C reaches the fault server
    // too: a request under way then may end as a connection failure.
    const stop = new AbortController();
    process.removeAllListeners("SIGINT");
    process.once("SIGINT", () => stop.abort());
    const sent = await runContinuous({
      baseURL: server.baseURL, cases: spec.cases, rate: options.rate, duration: options.duration, schedule,
      out: process.stdout, signal: stop.signal, statusEvery: process.stdout.isTTY ? 60 : undefined,
    });
    console.log(`\n${sent} requests sent`);
  } else {
    let done = 0;
    for (const c of spec.cases) {
      await runCase(c, server.baseURL);
      done += 1;
      if (process.stdout.isTTY) process.stdout.write(`\r  ${done}/${spec.cases.length} requests`);
    }
    if (process.stdout.isTTY) process.stdout.write("\n");
  }
  console.log();
  process.stdout.write(renderTable(await registry.metrics()));
} finally {
  await metrics.close();
  await server.stop();
}
