// Shared by the Node tests: the Python fault server as a child process, a fresh registry and
// span exporter per test, and the Prometheus text format read back into samples.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { Registry } from "prom-client";
import { configure } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "..", "..");
const fromEnv = process.env.FAILSIGHT_PYTHON;
export const python = fromEnv || resolve(repoRoot, ".venv", "bin", "python");

/** Why the fault server is missing, with what was looked for and how to provide it. */
function cannotStart(reason) {
  const where = fromEnv
    ? `FAILSIGHT_PYTHON=${python}`
    : `${python} (the repository's .venv; FAILSIGHT_PYTHON=/path/to/python sets another interpreter)`;
  return new Error(
    `fault server did not start: ${reason.trim() || "no output"}\n` +
      `  looked for the Python interpreter: ${where}\n` +
      "  the Node tests run `python -m failsight.testing` from it, so it needs failsight installed:\n" +
      "  run `make test` (or `make demo`) at the repository root to create .venv, or set\n" +
      "  FAILSIGHT_PYTHON to a Python where `pip install -e .` (repository root) was run",
  );
}

// Fault servers still running. A test file that times out is ended by SIGTERM without its
// after() hooks: its servers are killed then, and at any exit, so none outlives its test file.
const running = new Set();
const reap = () => {
  for (const child of running) child.kill("SIGKILL");
  running.clear();
};
process.once("exit", reap);
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.once(signal, () => {
    reap();
    process.kill(process.pid, signal); // then end of it, as without this handler
  });
}

// The fault server with a rate-limit budget of its own (`rate_limit`: failsight.testing.RateLimit's
// fields), which its command line does not set: the same server, started from Python.
const WITH_BUDGET = `
import json, sys, threading
from failsight.testing import FaultServer, RateLimit
s = json.loads(sys.argv[1])
server = FaultServer("127.0.0.1", 0, retry_after_ms=s["retry_after_ms"], slow_seconds=s["slow_seconds"],
                     video_polls_to_finish=s["video_polls_to_finish"], poll_after_ms=1,
                     rate_limit=RateLimit(**s["rate_limit"])).start()
print(f"failsight fault server on {server.base_url}", flush=True)
try:
    threading.Event().wait()
except KeyboardInterrupt:
    pass
finally:
    server.stop()
`;

/**
 * Start `python -m failsight.testing` on a free loopback port; resolves with its base URL and a
 * stop(). `settings.rate_limit` gives the `ratelimited` scenario's budget (RateLimit's fields).
 */
export function startFaultServer(settings = {}) {
  if (!existsSync(python)) return Promise.reject(cannotStart("no such file"));
  const common = {
    retry_after_ms: settings.retry_after_ms ?? 1,
    slow_seconds: settings.slow_seconds ?? 1,
    video_polls_to_finish: settings.video_polls_to_finish ?? 2,
  };
  const args = settings.rate_limit
    ? ["-c", WITH_BUDGET, JSON.stringify({ ...common, rate_limit: settings.rate_limit })]
    : [
        "-m", "failsight.testing", "--port", "0", "--quiet",
        "--retry-after-ms", String(common.retry_after_ms),
        "--slow-seconds", String(common.slow_seconds),
        "--video-polls-to-finish", String(common.video_polls_to_finish),
        "--poll-after-ms", "1",
      ];
  const child = spawn(python, args, { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  child.once("exit", () => running.delete(child));
  return new Promise((resolvePromise, reject) => {
    let out = "";
    let err = "";
    let started = false;
    const give = (reason) => {
      clearTimeout(timer);
      if (!started) reject(cannotStart(reason));
    };
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      give(`no address printed within 20 s\n${err}${out}`);
    }, 20_000);
    child.stderr.on("data", (d) => (err += d));
    // Not executable, say: spawn reports it here, and no "exit" follows.
    child.once("error", (error) => give(`${error.message}\n${err}`));
    child.stdout.on("data", (d) => {
      out += d;
      const match = /on (http:\/\/\S+\/v1)/.exec(out);
      if (match && !started) {
        started = true;
        clearTimeout(timer);
        resolvePromise({
          baseURL: match[1],
          stop: () =>
            new Promise((done) => {
              if (child.exitCode !== null || child.signalCode !== null) return done();
              child.once("exit", () => done());
              child.kill("SIGINT");
            }),
        });
      }
    });
    child.once("exit", (code, signal) => give(`it exited (${signal ?? code}):\n${err}`));
  });
}

/** A fresh registry and in-memory span exporter, configured as failsight's. */
export function freshTelemetry(options = {}) {
  const registry = new Registry();
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  configure({ registry, tracerProvider: provider, ...options });
  return { registry, exporter, provider };
}

/** Samples of the Prometheus text format: [{ name, labels, value }]. */
export function parseExposition(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    samples.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return samples;
}

export function labelKey(name, labels) {
  const sorted = Object.keys(labels).sort().map((k) => [k, labels[k]]);
  return JSON.stringify([name, sorted]);
}

const TIMED = [
  "genai_request_duration_seconds", "genai_time_to_first_token_seconds", "genai_video_job_duration_seconds",
  "genai_retry_backoff_seconds", "genai_request_phase_seconds", "genai_ratelimit_reset_seconds",
];

/** The genai_* samples the conformance suite compares (as tests/test_conformance.py's snapshot). */
export async function snapshot(registry) {
  const found = new Map();
  for (const s of parseExposition(await registry.metrics())) {
    if (!s.name.startsWith("genai_") || s.name.endsWith("_created") || s.name.endsWith("_bucket")) continue;
    if (TIMED.some((t) => s.name.startsWith(t)) && !s.name.endsWith("_count")) continue;
    found.set(labelKey(s.name, s.labels), s.value);
  }
  return found;
}

/** A sample's value summed over every series of `name` matching `labels` (0 when absent). */
export async function value(registry, name, labels = {}) {
  let total = 0;
  for (const s of parseExposition(await registry.metrics())) {
    if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) total += s.value;
  }
  return total;
}
