// The conformance cases as one workload against a running fault server, then /metrics served
// until stdin closes: what tests/test_node_parity.py scrapes and compares with Python's.
// Usage: node tools/workload.mjs <fault-server base URL>
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Registry } from "prom-client";
import { configure, instrumentOpenAI, startMetricsServer } from "../dist/index.js";
import { runCase } from "../test/cases.mjs";
import { repoRoot } from "../test/helpers.mjs";

const baseURL = process.argv[2];
if (!baseURL) {
  console.error("usage: node tools/workload.mjs <fault-server base URL>");
  process.exit(2);
}
const spec = JSON.parse(readFileSync(resolve(repoRoot, "tests", "conformance", "cases.json"), "utf8"));
configure({ registry: new Registry() });
instrumentOpenAI();
for (const c of spec.cases) await runCase(c, baseURL);
const server = await startMetricsServer({ port: 0 });
console.log(server.url);
process.stdin.resume();
process.stdin.on("end", () => server.close().then(() => process.exit(0)));
