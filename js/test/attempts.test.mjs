// Every attempt, its backoff, and the rate-limit headroom the answers report, end to end: the
// real openai SDK over a socket against the fault server's rate-limit scenarios (attempts.ts,
// ratelimit.ts; the Python package's tests/test_attempts.py).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { VERSION as VERSION7 } from "openai/version";
import OpenAI6 from "openai6";
import { VERSION as VERSION6 } from "openai6/version";
import { instrumentOpenAI, RetryPolicy, tracedGeneration } from "../dist/index.js";
import { freshTelemetry, parseExposition, startFaultServer, value } from "./helpers.mjs";

const messages = [{ role: "user", content: "hi" }];
const P = "127.0.0.1";

/** A headroom gauge's value, undefined when its series does not exist. */
async function gauge(registry, figure, model, resource) {
  const found = parseExposition(await registry.metrics()).find(
    (s) => s.name === `genai_ratelimit_${figure}` && s.labels.provider === P && s.labels.model === model && s.labels.resource === resource,
  );
  return found?.value;
}

const attributesOf = (span, name) => span.events.filter((e) => e.name === name).map((e) => e.attributes);

let server;
before(async () => {
  server = await startFaultServer({});
});
after(async () => {
  await server?.stop();
});

for (const [sdk, version] of [[OpenAI, VERSION7], [OpenAI6, VERSION6]]) {
  test(`429, 429, 200: the gauge reads 0 at each retry, then 1200; two retries, two backoff samples, one request (openai ${version})`, async () => {
    // The budget starts spent: 429, 429 (two refusals), then a new window of 1220 tokens.
    const budget = await startFaultServer({ rate_limit: { requests: 100, tokens: 1220, refusals: 2, retry_after_ms: 20, start_empty: true } });
    const t = freshTelemetry();
    const model = "gpt-4o-mini@ratelimited";
    const retryCounts = [];
    const seen = [];
    // The client's fetch, called for each attempt after the SDK's backoff: read the gauge then.
    const fetchAndLook = async (url, init) => {
      retryCounts.push(new Headers(init?.headers).get("x-stainless-retry-count"));
      seen.push(await gauge(t.registry, "remaining", model, "tokens"));
      return fetch(url, init);
    };
    try {
      const client = new sdk({ baseURL: budget.baseURL, apiKey: "sk-test", maxRetries: 2, fetch: fetchAndLook });
      instrumentOpenAI(client);
      await client.chat.completions.create({ model, messages });
    } finally {
      await budget.stop();
    }
    assert.deepEqual(retryCounts, ["0", "1", "2"]);
    assert.deepEqual(seen, [undefined, 0, 0]); // a 0 is a value
    assert.equal(await gauge(t.registry, "remaining", model, "tokens"), 1200);
    assert.equal(await gauge(t.registry, "limit", model, "tokens"), 1220);
    assert.equal(await gauge(t.registry, "remaining", model, "requests"), 99);
    assert.equal(await gauge(t.registry, "reset_seconds", model, "tokens"), 360); // "6m0s"
    const r = t.registry;
    assert.equal(await value(r, "genai_retries_total", { reason: "rate_limited" }), 2);
    assert.equal(await value(r, "genai_attempts_total", { status: "rate_limited" }), 2);
    assert.equal(await value(r, "genai_attempts_total", { status: "ok" }), 1);
    assert.equal(await value(r, "genai_retry_backoff_seconds_count", { retry_after: "honoured" }), 2);
    assert.equal(await value(r, "genai_retry_backoff_seconds_count"), 2);
    const backoff = await value(r, "genai_retry_backoff_seconds_sum");
    assert.ok(backoff >= 0.038 && backoff < 5, `the SDK slept the asked 20 ms twice: ${backoff}`);
    assert.equal(await value(r, "genai_requests_total"), 1);
    assert.equal(await value(r, "genai_request_duration_seconds_count"), 1);
    assert.equal(await value(r, "genai_request_attempts_sum"), 3);
    assert.equal(await value(r, "genai_request_phase_seconds_count", { phase: "backoff" }), 1);
    assert.ok(Math.abs((await value(r, "genai_request_phase_seconds_sum", { phase: "backoff" })) - backoff) < 1e-9);
    const attemptsTime = await value(r, "genai_request_phase_seconds_sum", { phase: "attempts" });
    const duration = await value(r, "genai_request_duration_seconds_sum");
    assert.ok(attemptsTime > 0 && attemptsTime + backoff <= duration, `${attemptsTime} + ${backoff} <= ${duration}`);
    const [span] = t.exporter.getFinishedSpans().filter((s) => s.name === `chat ${model}`);
    const events = attributesOf(span, "attempt");
    assert.deepEqual(events.map((e) => [e.attempt, e.status, e.status_code]), [[1, "rate_limited", 429], [2, "rate_limited", 429], [3, "ok", 200]]);
    assert.deepEqual(events.map((e) => e.retry_after_seconds), [0.02, 0.02, undefined]);
    assert.ok(!("backoff_seconds" in events[0]) && events[1].backoff_seconds >= 0.019, JSON.stringify(events));
    assert.deepEqual(attributesOf(span, "retry").map((e) => e.retry_after_seconds), [0.02, 0.02]);
  });
}

test("the budget counts down across calls, then 429 with Retry-After, then a new window", async () => {
  const budget = await startFaultServer({ rate_limit: { requests: 3, tokens: 1000, refusals: 1, retry_after_ms: 1500 } });
  const t = freshTelemetry();
  const model = "gpt-4o-mini@ratelimited";
  const left = [];
  try {
    const client = new OpenAI({ baseURL: budget.baseURL, apiKey: "sk-test", maxRetries: 0 });
    instrumentOpenAI(client);
    for (let i = 0; i < 3; i++) {
      await client.chat.completions.create({ model, messages });
      left.push(await gauge(t.registry, "remaining", model, "requests"));
    }
    await assert.rejects(client.chat.completions.create({ model, messages }), OpenAI.RateLimitError);
    await client.chat.completions.create({ model, messages }); // a new window
  } finally {
    await budget.stop();
  }
  assert.deepEqual(left, [2, 1, 0]);
  assert.equal(await gauge(t.registry, "remaining", model, "requests"), 2);
  assert.equal(await gauge(t.registry, "remaining", model, "tokens"), 980);
  assert.equal(await value(t.registry, "genai_attempts_total", { status: "ok" }), 4);
  assert.equal(await value(t.registry, "genai_attempts_total", { status: "rate_limited" }), 1);
  assert.equal(await value(t.registry, "genai_retry_backoff_seconds_count"), 0); // no retry, no backoff
  const failed = t.exporter.getFinishedSpans().filter((s) => s.status.code === 2);
  assert.equal(failed.length, 1);
  assert.deepEqual(attributesOf(failed[0], "attempt"), [{ attempt: 1, status: "rate_limited", status_code: 429, retry_after_seconds: 1.5 }]);
});

test("a lone successful attempt: no event, no headers no series, both phases observed", async () => {
  const t = freshTelemetry();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  instrumentOpenAI(client);
  await client.chat.completions.create({ model: "gpt-4o-mini", messages });
  assert.equal(await value(t.registry, "genai_attempts_total", { status: "ok" }), 1);
  assert.doesNotMatch(await t.registry.metrics(), /genai_ratelimit_\w+\{/);
  const [span] = t.exporter.getFinishedSpans();
  assert.deepEqual(span.events, []);
  assert.equal(await value(t.registry, "genai_request_phase_seconds_count", { phase: "attempts" }), 1);
  assert.equal(await value(t.registry, "genai_request_phase_seconds_sum", { phase: "backoff" }), 0);
});

test("streams, withResponse() and asResponse() read the headers", async () => {
  const t = freshTelemetry();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  instrumentOpenAI(client);
  const model = "gpt-4o-mini@ratelimit_openai";
  const stream = await client.chat.completions.create({ model, messages, stream: true });
  for await (const _chunk of stream);
  assert.equal(await gauge(t.registry, "remaining", model, "tokens"), 159980);
  assert.equal(await gauge(t.registry, "reset_seconds", model, "tokens"), 3723.5); // "1h2m3.5s"
  assert.equal(await gauge(t.registry, "reset_seconds", model, "requests"), 0.012); // "12ms"
  const raw = "gpt-4o@ratelimit_openai";
  const { data } = await client.chat.completions.create({ model: raw, messages }).withResponse();
  assert.ok(data.choices[0].message.content);
  assert.equal(await gauge(t.registry, "limit", raw, "requests"), 5000);
  const bare = "gpt-4.1@ratelimit_openai";
  const response = await client.chat.completions.create({ model: bare, messages }).asResponse();
  await response.text();
  assert.equal(await gauge(t.registry, "remaining", bare, "requests"), 4999);
  assert.equal(await value(t.registry, "genai_attempts_total", { status: "ok" }), 3);
});

test("Anthropic's headers through a gateway", async () => {
  const t = freshTelemetry();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  instrumentOpenAI(client);
  const model = "claude@ratelimit_anthropic";
  await client.chat.completions.create({ model, messages });
  assert.equal(await gauge(t.registry, "remaining", model, "requests"), 0);
  // input tokens 39000/40000, output 800/8000: the least left names the tokens resource
  assert.equal(await gauge(t.registry, "remaining", model, "tokens"), 800);
  assert.equal(await gauge(t.registry, "limit", model, "tokens"), 8000);
  assert.ok((await gauge(t.registry, "reset_seconds", model, "tokens")) > 86400); // RFC 3339, in 2030
});

test("malformed headers are counted once each and ignored; the caller is unaffected", async () => {
  const t = freshTelemetry();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  instrumentOpenAI(client);
  const model = "gpt-4o-mini@ratelimit_malformed";
  const result = await client.chat.completions.create({ model, messages });
  assert.ok(result.choices[0].message.content);
  assert.equal(await value(t.registry, "genai_telemetry_errors_total", { stage: "ratelimit_header" }), 3);
  assert.equal(await gauge(t.registry, "limit", model, "requests"), 60);
  assert.equal(await gauge(t.registry, "remaining", model, "requests"), undefined);
  assert.equal(await gauge(t.registry, "remaining", model, "tokens"), undefined);
});

test("a retry policy's backoff honours the Retry-After asked", async () => {
  const t = freshTelemetry();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  instrumentOpenAI(client);
  const waits = [];
  const model = "gpt-4o-mini@http_429_retry_after,http_500,ok";
  const headers = { "X-Failsight-Key": `policy-${randomUUID()}` };
  const policy = new RetryPolicy({ maxAttempts: 3, sleep: async (seconds) => void waits.push(seconds) });
  const ask = tracedGeneration({ name: "policy", retry: policy }, () => client.chat.completions.create({ model, messages }, { headers }));
  await ask();
  // this server asks retry-after-ms 1 on its 429 and 500: the policy waited that, twice
  assert.deepEqual(waits, [0.001, 0.001]);
  const r = t.registry;
  assert.equal(await value(r, "genai_retry_backoff_seconds_count", { retry_after: "honoured" }), 2);
  assert.equal(await value(r, "genai_retry_backoff_seconds_count"), 2);
  assert.ok(Math.abs((await value(r, "genai_retry_backoff_seconds_sum")) - 0.002) < 1e-9);
  assert.ok(Math.abs((await value(r, "genai_request_phase_seconds_sum", { phase: "backoff" })) - 0.002) < 1e-9);
  assert.equal(await value(r, "genai_attempts_total", { call_site: "policy" }), 3);
  assert.equal(await value(r, "genai_attempts_total", { status: "ok" }), 1);
  assert.equal(await value(r, "genai_request_attempts_sum"), 3);
  const [scope] = t.exporter.getFinishedSpans().filter((s) => s.name === "policy");
  assert.deepEqual(attributesOf(scope, "retry").map((e) => [e.reason, e.wait_seconds, e.retry_after_seconds]), [
    ["rate_limited", 0.001, 0.001],
    ["server_error", 0.001, 0.001],
  ]);
});

test("an attempt the SDK's timeout aborted is a timeout, retried or not; the caller's abort is not", async () => {
  const t = freshTelemetry();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 1, timeout: 300 });
  instrumentOpenAI(client);
  const headers = { "X-Failsight-Key": `timeout-${randomUUID()}` };
  await client.chat.completions.create({ model: "gpt-4o-mini@timeout,ok", messages }, { headers });
  const r = t.registry;
  assert.equal(await value(r, "genai_attempts_total", { status: "timeout" }), 1);
  assert.equal(await value(r, "genai_attempts_total", { status: "ok" }), 1);
  assert.equal(await value(r, "genai_retries_total", { reason: "timeout" }), 1); // was "exception" before the abort was told apart
  assert.equal(await value(r, "genai_retry_backoff_seconds_count", { retry_after: "absent" }), 1);
  const backoff = await value(r, "genai_retry_backoff_seconds_sum");
  assert.ok(backoff >= 0.1, `the SDK's own backoff (at least 0.5 s less jitter), measured from the abort: ${backoff}`);
  await assert.rejects(client.chat.completions.create({ model: "gpt-4o-mini@timeout", messages }, { maxRetries: 0 }), OpenAI.APIConnectionTimeoutError);
  assert.equal(await value(r, "genai_attempts_total", { status: "timeout" }), 2);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 50);
  await assert.rejects(client.chat.completions.create({ model: "gpt-4o-mini@timeout", messages }, { signal: controller.signal, maxRetries: 0 }));
  assert.equal(await value(r, "genai_attempts_total", { status: "timeout" }), 2); // the caller's abort
  assert.equal(await value(r, "genai_attempts_total"), 4);
  const [span] = t.exporter.getFinishedSpans().filter((s) => s.name === "chat gpt-4o-mini@timeout,ok");
  assert.deepEqual(attributesOf(span, "attempt").map((e) => [e.attempt, e.status]), [[1, "timeout"], [2, "ok"]]);
});
