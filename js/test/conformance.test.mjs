// The cross-language conformance suite, Node.js side: ../tests/conformance/cases.json (written by
// hand) and vocabulary_cases.json (generated from the vocabulary by tests/conformance/generate.py),
// the files tests/test_conformance.py reads too. `expectedSeries` must stay alike its `expected_series`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { SpanKind } from "@opentelemetry/api";
import OpenAI7 from "openai";
import OpenAI6 from "openai6";
import { VERSION as VERSION6 } from "openai6/version";
import { VERSION as VERSION7 } from "openai/version";
import { instrumentOpenAI, uninstrumentOpenAI } from "../dist/index.js";
import { runCase } from "./cases.mjs";
import { freshTelemetry, labelKey, repoRoot, snapshot, startFaultServer } from "./helpers.mjs";

const read = (name) => JSON.parse(readFileSync(resolve(repoRoot, "tests", "conformance", name), "utf8"));
const spec = read("cases.json");
// Same server settings (the generator copies them): one fault server runs both files' cases.
const cases = [...spec.cases, ...read("vocabulary_cases.json").cases];
const PROVIDER = "127.0.0.1";
// Attempts, backoff and rate-limit headroom (issue 29): compared in the cases that expect them
// (`attempts_by_status`), as tests/test_conformance.py's _PER_ATTEMPT.
const PER_ATTEMPT = ["genai_attempts_total", "genai_retry_backoff_seconds", "genai_request_phase_seconds", "genai_ratelimit_"];

function expectedSeries(c) {
  const exp = c.expect;
  const common = { provider: PROVIDER, ...c.labels };
  const series = new Map();
  const add = (name, own, value) => {
    const key = labelKey(name, { ...common, ...own });
    series.set(key, (series.get(key) ?? 0) + value);
  };
  const cls = exp.failure_class;
  add("genai_requests_total", { failure_class: cls }, 1);
  if (cls !== "none") add("genai_failures_total", { failure_class: cls, reason: exp.reason }, 1);
  add("genai_request_duration_seconds_count", { failure_class: cls }, 1);
  add("genai_request_attempts_count", {}, 1);
  add("genai_request_attempts_sum", {}, exp.attempts ?? 1);
  for (const [reason, n] of Object.entries(exp.retries ?? {})) add("genai_retries_total", { reason }, n);
  for (const [reason, n] of Object.entries(exp.finish_reasons ?? {})) add("genai_finish_reasons_total", { finish_reason: reason }, n);
  for (const [tokenType, n] of Object.entries(exp.tokens ?? {})) add("genai_tokens_total", { token_type: tokenType }, n);
  // Wasted tokens: "token_type|failure_class|reason", or else all the tokens of a failed request.
  let wasted = exp.wasted;
  if (wasted === undefined && cls !== "none") {
    wasted = Object.fromEntries(Object.entries(exp.tokens ?? {}).map(([t, n]) => [`${t}|${cls}|${exp.reason}`, n]));
  }
  for (const [key, n] of Object.entries(wasted ?? {})) {
    const [tokenType, wastedClass, reason] = key.split("|");
    add("genai_wasted_tokens_total", { token_type: tokenType, failure_class: wastedClass, reason }, n);
  }
  for (const [key, n] of Object.entries(exp.filters ?? {})) {
    const [category, stage, severity] = key.split("|");
    add("genai_content_filter_total", { category, stage, severity }, n);
  }
  if (exp.ttft) add("genai_time_to_first_token_seconds_count", {}, exp.ttft);
  for (const [status, n] of Object.entries(exp.video_jobs ?? {})) {
    add("genai_video_jobs_total", { status }, n);
    add("genai_video_job_duration_seconds_count", { status }, n);
  }
  // Tool calls judged against the request's declared tools: "tool|outcome".
  for (const [key, n] of Object.entries(exp.tool_calls ?? {})) {
    const [tool, outcome] = key.split("|");
    add("genai_tool_calls_total", { tool, outcome }, n);
  }
  if (exp.attempts_by_status !== undefined) {
    // every attempt, its backoff, the request's two phases
    for (const [status, n] of Object.entries(exp.attempts_by_status)) add("genai_attempts_total", { status }, n);
    for (const [asked, n] of Object.entries(exp.backoff ?? {})) add("genai_retry_backoff_seconds_count", { retry_after: asked }, n);
    for (const phase of ["attempts", "backoff"]) add("genai_request_phase_seconds_count", { phase }, 1);
    // Headroom gauges: "resource|figure" -> the value last seen (one series per provider and model).
    for (const [key, value] of Object.entries(exp.ratelimit ?? {})) {
      const [resource, figure] = key.split("|");
      const gauge = labelKey(`genai_ratelimit_${figure}`, { provider: PROVIDER, model: c.labels.model, resource });
      series.set(gauge, (series.get(gauge) ?? 0) + value);
    }
  }
  // Telemetry errors a case expects: stage -> count.
  for (const [stage, n] of Object.entries(exp.telemetry_errors ?? {})) {
    const key = labelKey("genai_telemetry_errors_total", { stage });
    series.set(key, (series.get(key) ?? 0) + n);
  }
  return new Map([...series].filter(([, v]) => v));
}

// The newest major, patched globally; and the major before (the `openai6` alias of the
// lockfile), each client patched on its own: the peer range is `>=6 <8`.
const SDKS = [
  { label: `openai ${VERSION7}`, sdk: OpenAI7, perClient: false },
  { label: `openai ${VERSION6}`, sdk: OpenAI6, perClient: true },
];

for (const { label, sdk, perClient } of SDKS) describe(`conformance (tests/conformance), ${label}`, () => {
  let server;
  let telemetry;
  before(async () => {
    server = await startFaultServer(spec.server);
    telemetry = freshTelemetry();
    if (!perClient) instrumentOpenAI();
  });
  after(async () => {
    if (!perClient) uninstrumentOpenAI();
    await server?.stop();
  });

  for (const c of cases) {
    test(c.id, async () => {
      telemetry.exporter.reset();
      const beforeSnap = await snapshot(telemetry.registry);
      const { error } = await runCase(c, server.baseURL, { sdk, perClient });
      const afterSnap = await snapshot(telemetry.registry);
      assert.equal(error !== undefined, c.expect.raises ?? false, String(error?.stack ?? error));
      const deltas = new Map();
      for (const key of new Set([...beforeSnap.keys(), ...afterSnap.keys()])) {
        const name = JSON.parse(key)[0];
        if (name === "genai_in_flight_requests") {
          assert.equal(afterSnap.get(key) ?? 0, 0, `in-flight not back to 0: ${key}`);
          continue;
        }
        if (c.expect.attempts_by_status === undefined && PER_ATTEMPT.some((p) => name.startsWith(p))) continue;
        const d = (afterSnap.get(key) ?? 0) - (beforeSnap.get(key) ?? 0);
        if (d) deltas.set(key, d);
      }
      assert.deepEqual(Object.fromEntries([...deltas].sort()), Object.fromEntries([...expectedSeries(c)].sort()));

      const spans = telemetry.exporter.getFinishedSpans();
      const found = spans.filter((s) => s.name === c.span.name);
      assert.ok(found.length, `no span ${c.span.name} in ${spans.map((s) => s.name)}`);
      const attributes = found[found.length - 1].attributes;
      for (const [name, value] of Object.entries(c.span.attributes)) {
        assert.deepEqual(attributes[name], value, `${name}`);
      }
      if (c.client_spans !== undefined) {
        assert.equal(spans.filter((s) => s.kind === SpanKind.CLIENT).length, c.client_spans);
      }
    });
  }
});
