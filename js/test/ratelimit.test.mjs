// Rate-limit headers read as providers send them (ratelimit.ts, pure; the Python package's
// tests/test_ratelimit.py): tables of values, every header container the patch meets,
// precedence between spellings, malformed values named once and counted once.
import assert from "node:assert/strict";
import { test } from "node:test";
import { backoffLabel, recordReading } from "../dist/attempts.js";
import { getState } from "../dist/config.js";
import { parseCount, parseDuration, readHeaders } from "../dist/ratelimit.js";
import { freshTelemetry, value } from "./helpers.mjs";

const NOW = 1_704_067_200; // 2024-01-01T00:00:00Z

const close = (actual, expected) => assert.ok(Math.abs(actual - expected) < 1e-9, `${actual} != ${expected}`);

test("durations as providers send them: seconds, Go durations, RFC 3339, HTTP dates", () => {
  const table = [
    ["0", 0], ["30", 30], ["1.5", 1.5], [".5", 0.5], ["6m0s", 360], ["1.5s", 1.5], ["20ms", 0.02],
    ["1h2m3.5s", 3723.5], ["250us", 0.00025], ["7ns", 7e-9], [" 2s ", 2],
    ["2024-01-01T00:01:00Z", 60], // Anthropic's reset: RFC 3339
    ["2024-01-01T00:00:30.500000+00:00", 30.5],
    ["2024-01-01T01:00:10+01:00", 10],
    ["2024-01-01T00:00:10", 10], // no offset: UTC
    ["2023-12-31T23:59:00Z", 0], // already past
    ["Mon, 01 Jan 2024 00:00:45 GMT", 45], // an HTTP date (IMF-fixdate)
    ["Monday, 01-Jan-24 00:00:50 GMT", 50], // RFC 850
    ["Mon Jan  1 00:00:55 2024", 55], // asctime
  ];
  for (const [text, seconds] of table) {
    const got = parseDuration(text, NOW);
    assert.notEqual(got, undefined, text);
    close(got, seconds);
  }
});

test("malformed durations read as nothing", () => {
  const table = ["", "soon", "-1", "-5s", "1e3", "inf", "nan", "5 minutes", "1x", "s", "2024-13-45T00:00Z", "2024-04-31T00:00Z",
    "Mon, 32 Jan 2024 00:00:45 GMT", "March 7", "1".repeat(65)];
  for (const text of table) assert.equal(parseDuration(text, NOW), undefined, JSON.stringify(text));
});

test("counts: non-negative integers, nothing else", () => {
  const table = [["0", 0], ["1200", 1200], [" 7 ", 7], ["-1", undefined], ["1.5", undefined], ["lots", undefined], ["", undefined],
    ["1e3", undefined], ["inf", undefined], ["0x10", undefined]];
  for (const [text, count] of table) assert.equal(parseCount(text), count, JSON.stringify(text));
});

const OPENAI = {
  "x-ratelimit-limit-requests": "5000",
  "x-ratelimit-remaining-requests": "0",
  "x-ratelimit-reset-requests": "12ms",
  "x-ratelimit-limit-tokens": "160000",
  "X-RateLimit-Remaining-Tokens": "159980", // any case
  "x-ratelimit-reset-tokens": "6m0s",
};
const EXPECTED = [
  { resource: "requests", limit: 5000, remaining: 0, reset: 0.012 },
  { resource: "tokens", limit: 160000, remaining: 159980, reset: 360 },
];

/** The header containers an answer's headers come in: fetch Headers, a Map, pairs, a plain object. */
function containers(headers) {
  const withExtra = { "content-type": "application/json", "x-request-id": "req_1", ...headers };
  return {
    Headers: new Headers(withExtra),
    Map: new Map(Object.entries(withExtra)),
    pairs: Object.entries(withExtra),
    object: withExtra,
  };
}

test("every header container gives the same reading, the 0 a value", () => {
  for (const [kind, headers] of Object.entries(containers(OPENAI))) {
    assert.deepEqual(readHeaders(headers, NOW), { figures: EXPECTED, retryAfter: undefined, malformed: [] }, kind);
  }
});

test("no rate-limit header, or no headers at all, reads nothing", () => {
  for (const [kind, headers] of Object.entries(containers({}))) assert.equal(readHeaders(headers), undefined, kind);
  for (const nothing of [undefined, null, 42, "x-ratelimit-limit-requests"]) assert.equal(readHeaders(nothing), undefined);
});

test("retry-after: milliseconds first, seconds, an HTTP date; the readable one", () => {
  const table = [
    [{ "retry-after": "2" }, 2],
    [{ "retry-after-ms": "1500" }, 1.5],
    [{ "retry-after-ms": "250", "retry-after": "1" }, 0.25],
    [{ "retry-after-ms": "soon", "retry-after": "3" }, 3],
    [{ "retry-after": "Mon, 01 Jan 2024 00:00:20 GMT" }, 20],
    [{ "retry-after": "0" }, 0],
  ];
  for (const [headers, wait] of table) {
    const reading = readHeaders(headers, NOW);
    assert.deepEqual(reading.figures, [], JSON.stringify(headers));
    close(reading.retryAfter, wait);
  }
});

const RESET = "2024-01-01T00:01:00Z";
const anthropic = (kind, limit, remaining) => ({
  [`anthropic-ratelimit-${kind}-limit`]: String(limit),
  [`anthropic-ratelimit-${kind}-remaining`]: String(remaining),
  [`anthropic-ratelimit-${kind}-reset`]: RESET,
});

test("Anthropic's spellings map onto requests and tokens; the combined tokens win", () => {
  const headers = { ...anthropic("requests", 50, 49), ...anthropic("tokens", 90000, 1000), ...anthropic("input-tokens", 80000, 500), ...anthropic("output-tokens", 10000, 500) };
  assert.deepEqual(readHeaders(headers, NOW).figures, [
    { resource: "requests", limit: 50, remaining: 49, reset: 60 },
    { resource: "tokens", limit: 90000, remaining: 1000, reset: 60 },
  ]);
});

test("Anthropic's input and output tokens alone: the least share left wins", () => {
  const headers = { ...anthropic("input-tokens", 40000, 39000), ...anthropic("output-tokens", 8000, 800) };
  assert.deepEqual(readHeaders(headers, NOW).figures, [{ resource: "tokens", limit: 8000, remaining: 800, reset: 60 }]);
});

test("OpenAI's spellings win over Anthropic's", () => {
  const headers = { ...anthropic("tokens", 90000, 10), "x-ratelimit-remaining-tokens": "70" };
  assert.deepEqual(readHeaders(headers, NOW).figures, [{ resource: "tokens", limit: undefined, remaining: 70, reset: undefined }]);
});

const MALFORMED = {
  "x-ratelimit-limit-requests": "60",
  "x-ratelimit-remaining-requests": "lots",
  "x-ratelimit-reset-requests": "soon",
  "x-ratelimit-remaining-tokens": "-5",
  "retry-after": "later",
};

test("malformed values are named once each and left out; the readable ones stay", () => {
  const reading = readHeaders(MALFORMED, NOW);
  assert.deepEqual(reading.figures, [{ resource: "requests", limit: 60, remaining: undefined, reset: undefined }]);
  assert.deepEqual([...reading.malformed].sort(), [
    "retry-after", "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-requests",
  ]);
  assert.equal(reading.retryAfter, undefined);
  const only = readHeaders({ "x-ratelimit-remaining-tokens": "n/a" });
  assert.deepEqual(only, { figures: [], retryAfter: undefined, malformed: ["x-ratelimit-remaining-tokens"] });
});

test("a reading sets the gauges it has values for; each malformed value is counted once in telemetry errors", async () => {
  const t = freshTelemetry();
  const stage = { stage: "ratelimit_header" };
  recordReading(getState().metrics, "openai", "gpt-4o", readHeaders(MALFORMED, NOW));
  assert.equal(await value(t.registry, "genai_telemetry_errors_total", stage), 4);
  assert.equal(await value(t.registry, "genai_ratelimit_limit", { provider: "openai", model: "gpt-4o", resource: "requests" }), 60);
  const text = await t.registry.metrics();
  // a series that never had a value does not read 0
  assert.doesNotMatch(text, /genai_ratelimit_remaining\{/);
  assert.doesNotMatch(text, /genai_ratelimit_reset_seconds\{/);
  recordReading(getState().metrics, "openai", "gpt-4o", readHeaders({ "x-ratelimit-remaining-tokens": "0" }));
  assert.equal(await value(t.registry, "genai_ratelimit_remaining", { resource: "tokens" }), 0);
  assert.match(await t.registry.metrics(), /genai_ratelimit_remaining\{provider="openai",model="gpt-4o",resource="tokens"\} 0/);
  assert.equal(await value(t.registry, "genai_telemetry_errors_total", stage), 4); // nothing more
});

test("the backoff's retry_after label: absent, honoured within 50 ms, ignored", () => {
  assert.deepEqual([backoffLabel(1, undefined), backoffLabel(2, 2), backoffLabel(1.96, 2), backoffLabel(0.5, 2)], ["absent", "honoured", "honoured", "ignored"]);
});
