// npm run demo -- --duration / --forever: the continuous demo run as a child process, /metrics
// scraped while it runs, and its end (summary table, exit 0, no fault server left behind).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { incidents, pick, Schedule, steadyMix } from "../demo/continuous.mjs";
import { parseExposition, python, repoRoot } from "./helpers.mjs";

const jsRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const spec = JSON.parse(readFileSync(resolve(repoRoot, "tests", "conformance", "cases.json"), "utf8"));

/** The demo as a child: its output so far, a promise of the first match of a pattern, and its exit. */
function startDemo(args) {
  const child = spawn(process.execPath, ["demo/demo.mjs", ...args], {
    cwd: jsRoot, env: { ...process.env, FAILSIGHT_PYTHON: python }, stdio: ["ignore", "pipe", "pipe"],
  });
  const run = { child, out: "", err: "", started: performance.now() };
  const waiters = [];
  child.stdout.on("data", (d) => {
    run.out += d;
    for (const w of waiters) w();
  });
  child.stderr.on("data", (d) => (run.err += d));
  run.exited = new Promise((done) => child.once("exit", (code, signal) => done({ code, signal, seconds: (performance.now() - run.started) / 1000 })));
  run.waitFor = (pattern) => new Promise((done, reject) => {
    const check = () => {
      const m = pattern.exec(run.out);
      if (m) done(m);
    };
    waiters.push(check);
    check();
    run.exited.then(() => reject(new Error(`demo exited before printing ${pattern}:\n${run.out}\n${run.err}`)));
  });
  return run;
}

async function requestsTotal(url) {
  const text = await (await fetch(url)).text();
  return parseExposition(text)
    .filter((s) => s.name === "genai_requests_total")
    .reduce((sum, s) => sum + s.value, 0);
}

const HEADER = /fault server (http:\/\/\S+\/v1), metrics (http:\/\/\S+\/metrics)/;

async function assertServerGone(baseURL) {
  await assert.rejects(fetch(`${baseURL}/models`), (error) => error.cause?.code === "ECONNREFUSED", `fault server ${baseURL} still answers`);
}

test("--duration 4 --port 0: /metrics grows during the run, then the table, exit 0, fault server gone", async () => {
  const run = startDemo(["--duration", "4", "--port", "0"]);
  try {
    const [, baseURL, metricsURL] = await run.waitFor(HEADER);
    assert.doesNotMatch(metricsURL, /:9464\//, "--port 0 picks a free port");
    await new Promise((done) => setTimeout(done, 1000));
    const first = await requestsTotal(metricsURL);
    await new Promise((done) => setTimeout(done, 1500));
    const second = await requestsTotal(metricsURL);
    assert.ok(first > 0, `requests recorded after 1 s: ${first}`);
    assert.ok(second > first, `requests grow between two scrapes: ${first} then ${second}`);
    const text = await (await fetch(metricsURL)).text();
    const models = new Set(parseExposition(text).filter((s) => s.name === "genai_requests_total").map((s) => s.labels.model));
    assert.ok(![...models].some((m) => m.includes("@")), `plain model names: ${[...models]}`);
    const end = await run.exited;
    assert.deepEqual([end.code, end.signal], [0, null], run.err);
    assert.ok(end.seconds >= 4 && end.seconds < 20, `ran ${end.seconds.toFixed(1)} s`);
    assert.match(run.out, /^Logical requests: \d+$/m);
    assert.match(run.out, /^Tokens by type$/m);
    const logical = Number(/^Logical requests: (\d+)$/m.exec(run.out)[1]);
    const sent = Number(/^(\d+) requests sent$/m.exec(run.out)[1]);
    assert.ok(logical >= second && logical === sent, `table ${logical}, sent ${sent}, last scrape ${second}`);
    await assertServerGone(baseURL);
    await assert.rejects(fetch(metricsURL), "/metrics closed at the end");
  } finally {
    run.child.kill("SIGKILL");
  }
});

test("--forever ends on SIGINT as at the end of --duration: table, exit 0, fault server gone", async () => {
  const run = startDemo(["--forever", "--port", "0", "--rate", "20"]);
  try {
    const [, baseURL, metricsURL] = await run.waitFor(HEADER);
    for (let i = 0; i < 50 && (await requestsTotal(metricsURL)) === 0; i++) await new Promise((done) => setTimeout(done, 100));
    run.child.kill("SIGINT");
    const end = await run.exited;
    assert.deepEqual([end.code, end.signal], [0, null], run.err);
    assert.match(run.out, /^Logical requests: [1-9]\d*$/m);
    await assertServerGone(baseURL);
  } finally {
    run.child.kill("SIGKILL");
  }
});

test("--help prints usage and starts nothing; a wrong option exits 2", async () => {
  const help = startDemo(["--help"]);
  const end = await help.exited;
  assert.equal(end.code, 0);
  assert.match(help.out, /^usage: npm run demo -- \[--forever \| --duration SECONDS\]/);
  assert.doesNotMatch(help.out, /fault server/);
  for (const args of [["--duration", "soon"], ["--forever", "--duration", "3"], ["--rate", "2"], ["--duration", "3", "--incident-every", "5", "--incident-length", "5"]]) {
    const bad = startDemo(args);
    assert.equal((await bad.exited).code, 2, `${args.join(" ")}: ${bad.err}`);
    assert.match(bad.err, /^demo: /, args.join(" "));
  }
});

test("a busy --port: exit 1 with the reason, before any fault server starts", async () => {
  const busy = createServer();
  await new Promise((done) => busy.listen(0, "127.0.0.1", done));
  try {
    const run = startDemo(["--duration", "2", "--port", String(busy.address().port)]);
    const end = await run.exited;
    assert.equal(end.code, 1, run.err);
    assert.match(run.err, /^demo: cannot serve \/metrics on 127\.0\.0\.1:\d+ \(EADDRINUSE\); .* or give --port$/m);
    assert.doesNotMatch(run.out, /fault server/);
  } finally {
    busy.close();
  }
});

test("the steady mix keeps every call site under half of each alert threshold; incidents cross it", () => {
  const mix = steadyMix(spec.cases);
  const ids = new Set(mix.map((e) => e.case.id));
  for (const c of spec.cases) assert.ok(ids.has(c.id), `${c.id} is in the mix`);
  const groups = new Map();
  for (const e of mix) {
    const g = groups.get(e.group) ?? { all: 0, hard: 0, silent: 0, content_filter: 0, length: 0, rate_limited: 0, retries: 0, toolCalls: 0, toolCallsFailed: 0 };
    const { failure_class: cls, reason, retries = {}, tool_calls: toolCalls = {} } = e.case.expect;
    for (const [key, n] of Object.entries(toolCalls)) {
      g.toolCalls += e.weight * n;
      if (!key.endsWith("|ok")) g.toolCallsFailed += e.weight * n;
    }
    g.all += e.weight;
    if (cls === "hard" || cls === "silent") g[cls] += e.weight;
    if (reason in g) g[reason] += e.weight;
    g.retries += e.weight * Object.values(retries).reduce((a, b) => a + b, 0);
    groups.set(e.group, g);
  }
  // Half of dashboards/rules/failsight-alerts.yml's thresholds.
  const half = { hard: 0.05, silent: 0.025, content_filter: 0.025, length: 0.025, rate_limited: 0.05, retries: 0.25 };
  for (const [group, g] of groups) {
    for (const [what, limit] of Object.entries(half)) assert.ok(g[what] / g.all < limit, `${group}: ${what} ${(g[what] / g.all).toFixed(3)}`);
    // GenAIToolCallFailures: the failing share of the tool calls, threshold 10%.
    if (g.toolCalls) assert.ok(g.toolCallsFailed / g.toolCalls < 0.05, `${group}: tool calls failing ${(g.toolCallsFailed / g.toolCalls).toFixed(3)}`);
  }
  // During an incident its call site fails the incident's way far above the threshold.
  const list = incidents(spec.cases);
  assert.equal(list.length, 4);
  let seed = 1;
  const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  for (const incident of list) {
    const drawn = Array.from({ length: 20000 }, () => pick(mix, random, incident));
    const atSite = drawn.filter((c) => mix.find((e) => e.case === c)?.group === incident.group || incident.steps.includes(c));
    const failing = atSite.filter((c) => incident.steps.includes(c)).length / atSite.length;
    assert.ok(failing > incident.share * 0.8, `${incident.title}: ${failing.toFixed(2)} of ${atSite.length}`);
  }
});

test("Schedule: quiet, then each incident in the last `length` seconds of its slot, in turn", () => {
  const list = incidents(spec.cases);
  const schedule = new Schedule(10, 4, list);
  assert.equal(schedule.active(0), undefined);
  assert.equal(schedule.active(5.9), undefined);
  assert.equal(schedule.active(6), list[0]);
  assert.equal(schedule.active(9.9), list[0]);
  assert.equal(schedule.active(10), undefined);
  assert.equal(schedule.active(16), list[1]);
  assert.equal(schedule.active(10 * list.length + 7), list[0]);
  assert.throws(() => new Schedule(5, 5, list), RangeError);
});
