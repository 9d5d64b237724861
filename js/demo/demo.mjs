// make demo-js: the bundled fault server on loopback, a mixed workload through the real openai
// client (every failure class, streaming, retries, images, video jobs), /metrics served, and the
// summary table `failsight demo` prints. No API key, no network.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Registry } from "prom-client";
import { configure, instrumentOpenAI, startMetricsServer } from "../dist/index.js";
import { runCase } from "../test/cases.mjs";
import { parseExposition, repoRoot, startFaultServer } from "../test/helpers.mjs";

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

const registry = new Registry();
configure({ registry });
instrumentOpenAI();
const server = await startFaultServer(spec.server);
const metrics = await startMetricsServer({ port: Number(process.env.FAILSIGHT_DEMO_PORT ?? 0) });
try {
  console.log(`failsight demo (Node.js): fault server ${server.baseURL}, metrics ${metrics.url}`);
  let done = 0;
  for (const c of spec.cases) {
    await runCase(c, server.baseURL);
    done += 1;
    if (process.stdout.isTTY) process.stdout.write(`\r  ${done}/${spec.cases.length} requests`);
  }
  if (process.stdout.isTTY) process.stdout.write("\n");
  console.log();
  process.stdout.write(renderTable(await registry.metrics()));
} finally {
  await metrics.close();
  await server.stop();
}
