// Answers judged against what their requests declared, end to end through the openai SDK (both
// majors) over a socket against the Python fault server: parse() ends its call as create does
// (openai 7's parse() used to leave the in-flight gauge at 1), opt-outs global and per call
// site, the CLIENT span's tool-call counts, a schema that cannot be checked counted as a
// telemetry error, the caller's request and results unchanged, and a hostile answer (1,000 tool
// calls of 10 MB arguments) judged in bounded time without throwing.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { SpanKind } from "@opentelemetry/api";
import OpenAI7 from "openai";
import OpenAI6 from "openai6";
import { makeParseableResponseFormat } from "openai/lib/parser";
import { configure, instrumentOpenAI, tracedGeneration, uninstrumentOpenAI } from "../dist/index.js";
import { deepFreeze, VOCABULARY } from "../dist/vocabulary.js";
import { freshTelemetry, startFaultServer, value } from "./helpers.mjs";

const D = VOCABULARY.declared;
const WEATHER = { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false };
const TOOLS = [{ type: "function", function: { name: "get_weather", parameters: WEATHER } }];
const messages = [{ role: "user", content: "weather in Paris?" }];
const FORMAT = { type: "json_schema", json_schema: { name: "weather", schema: WEATHER, strict: true } };

let server;
before(async () => {
  server = await startFaultServer({});
});
after(async () => {
  await server?.stop();
});

/** A fresh registry, and a client of `sdk` instrumented on its own (so both majors run side by side). */
function setUp(sdk = OpenAI7, options = {}) {
  const telemetry = freshTelemetry(options);
  const client = new sdk({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  instrumentOpenAI(client);
  return { ...telemetry, client };
}

const requests = (registry, labels = {}) => value(registry, "genai_requests_total", labels);
const inFlight = (registry) => value(registry, "genai_in_flight_requests");
const failures = (registry, reason) => value(registry, "genai_failures_total", { reason });
const toolCalls = (registry, labels = {}) => value(registry, "genai_tool_calls_total", labels);

for (const [label, sdk] of [["openai 7", OpenAI7], ["openai 6", OpenAI6]]) {
  test(`${label}: chat.completions.parse ends its call (in-flight back to 0), judged as create would be`, async () => {
    const { registry, client } = setUp(sdk);
    const parsed = await client.chat.completions.parse({ model: "gpt-4o-mini@json_ok", messages, response_format: FORMAT });
    assert.deepEqual(parsed.choices[0].message.parsed, { city: "Paris" });
    assert.equal(await inFlight(registry), 0);
    assert.equal(await requests(registry, { failure_class: "none" }), 1);
    // Not JSON: the SDK's JSON.parse throws to the caller; the call ends silent, its tokens wasted.
    await assert.rejects(client.chat.completions.parse({ model: "gpt-4o-mini@json_not_json", messages, response_format: FORMAT }), SyntaxError);
    assert.equal(await inFlight(registry), 0);
    assert.equal(await failures(registry, D.output_reasons.not_json), 1);
    assert.equal(await value(registry, "genai_wasted_tokens_total", { reason: D.output_reasons.not_json, token_type: "input" }), 11);
  });

  test(`${label}: responses.parse ends its call; its schema mismatch is judged`, async () => {
    const { registry, client } = setUp(sdk);
    const text = { format: { type: "json_schema", name: "weather", schema: WEATHER, strict: true } };
    const answer = await client.responses.parse({ model: "gpt-4o-mini@json_schema_mismatch", input: "weather?", text });
    assert.deepEqual(answer.output_parsed, { town: "Paris" }); // the SDK parses JSON only: the caller gets it
    assert.equal(await inFlight(registry), 0);
    assert.equal(await failures(registry, D.output_reasons.schema_mismatch), 1);
  });
}

test("parse() with a typed parser that refuses what the judgement passed: the parser's error names the reason", async () => {
  const { registry, client } = setUp();
  const strictCity = makeParseableResponseFormat(
    { type: "json_schema", json_schema: { name: "w", schema: { type: "object" } } },
    () => {
      throw new TypeError("not a Weather"); // as Zod would refuse it
    },
  );
  await assert.rejects(client.chat.completions.parse({ model: "gpt-4o-mini@json_ok", messages, response_format: strictCity }), TypeError);
  assert.equal(await inFlight(registry), 0);
  assert.equal(await failures(registry, D.output_reasons.schema_mismatch), 1);
});

test("configure({ judgeDeclared: false }) turns judging off; a call site turns it back on, nested scopes inherit", async () => {
  const { registry, client } = setUp(OpenAI7, { judgeDeclared: false });
  const undeclared = () => client.chat.completions.create({ model: "gpt-4o-mini@tool_undeclared", messages, tools: TOOLS });
  await undeclared();
  assert.equal(await requests(registry, { failure_class: "none" }), 1);
  assert.equal(await toolCalls(registry), 0);
  const judging = tracedGeneration({ name: "judging", judgeDeclared: true }, async () => {
    await undeclared();
    await tracedGeneration({ name: "inner" }, undeclared)();
  });
  await judging();
  assert.equal(await requests(registry, { call_site: "judging", failure_class: "silent" }), 1);
  assert.equal(await toolCalls(registry, { call_site: "judging", tool: D.undeclared_tool, outcome: "not_declared" }), 2);
});

test("tracedGeneration({ judgeDeclared: false }) turns judging off for one call site", async () => {
  const { registry, client } = setUp();
  const site = tracedGeneration({ name: "quiet", judgeDeclared: false }, () =>
    client.chat.completions.create({ model: "gpt-4o-mini@tool_args_not_json", messages, tools: TOOLS }));
  await site();
  await client.chat.completions.create({ model: "gpt-4o-mini@tool_args_not_json", messages, tools: TOOLS });
  assert.equal(await requests(registry, { call_site: "quiet", failure_class: "none" }), 1);
  assert.equal(await requests(registry, { call_site: "unscoped", failure_class: "silent" }), 1);
});

test("judgeDeclared is checked when configured, not on the first call", () => {
  assert.throws(() => configure({ judgeDeclared: "no" }), { name: "TypeError", message: /judgeDeclared.*"no"/ });
  assert.throws(() => tracedGeneration({ judgeDeclared: 0 }, () => 1), { name: "TypeError", message: /judgeDeclared.*0/ });
});

test("the CLIENT span carries the tool-call counts and the first failing tool's name", async () => {
  const { exporter, client } = setUp();
  await client.chat.completions.create({ model: "gpt-4o-mini@tool_undeclared", messages, tools: TOOLS });
  const span = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.CLIENT);
  const names = VOCABULARY.spans.failsight;
  assert.equal(span.attributes[names.tool_calls], 1);
  assert.equal(span.attributes[names.tool_calls_failed], 1);
  assert.equal(span.attributes[names.failed_tool], "get_stock_price");
  assert.equal(span.attributes[names.failure_reason], D.tool_call_reasons.not_declared);
});

test("a schema that cannot be checked (remote $ref, never fetched): judged by name and JSON-ness, one telemetry error", async () => {
  const { registry, client } = setUp();
  const remote = [{ type: "function", function: { name: "get_weather", parameters: { $ref: "https://example.com/weather.json" } } }];
  await client.chat.completions.create({ model: "gpt-4o-mini@tool_args_invalid", messages, tools: remote });
  assert.equal(await requests(registry, { failure_class: "none" }), 1);
  assert.equal(await toolCalls(registry, { tool: "get_weather", outcome: "ok" }), 1);
  assert.equal(await value(registry, "genai_telemetry_errors_total", { stage: "schema" }), 1);
});

test("streamed tool calls with judging on: the caller's chunks are the SDK's, unchanged", async () => {
  const run = async (instrumented) => {
    const { registry } = freshTelemetry();
    const client = new OpenAI7({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
    if (instrumented) instrumentOpenAI(client);
    const body = deepFreeze({ model: "gpt-4o-mini@tool_args_invalid", messages, tools: TOOLS, stream: true });
    const chunks = [];
    for await (const chunk of await client.chat.completions.create(body)) chunks.push(chunk);
    const calls = chunks.flatMap((c) => c.choices.flatMap((choice) => choice.delta?.tool_calls ?? []));
    return { registry, shape: chunks.map((c) => c.choices.map((choice) => Object.keys(choice.delta ?? {}).sort())), calls };
  };
  const plain = await run(false);
  const judged = await run(true);
  assert.deepEqual(judged.shape, plain.shape);
  assert.deepEqual(judged.calls.map((c) => c.function), plain.calls.map((c) => c.function));
  assert.equal(await failures(judged.registry, D.tool_call_reasons.invalid_arguments), 1);
  assert.equal(await value(judged.registry, "genai_telemetry_errors_total"), 0);
});

test("hostile answer through the SDK: 1,000 tool calls of 10 MB arguments, judged in bounded time, the caller's result whole", async () => {
  const big = `{"city": "${"x".repeat(10 * 1024 * 1024)}"}`;
  const calls = Array.from({ length: 1000 }, (_, i) => ({ id: `c${i}`, type: "function", function: { name: i % 2 ? "get_weather" : "other", arguments: i < 10 ? big : '{"city": 1}' } }));
  const text = JSON.stringify({
    id: "x", object: "chat.completion", created: 1, model: "m",
    choices: [{ index: 0, finish_reason: "tool_calls", message: { role: "assistant", content: null, tool_calls: calls } }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  });
  const fetch = async () => new Response(text, { status: 200, headers: { "content-type": "application/json" } });
  const { registry } = freshTelemetry();
  const client = new OpenAI7({ baseURL: "http://127.0.0.1:9/v1", apiKey: "sk-test", maxRetries: 0, fetch });
  instrumentOpenAI(client);
  const started = performance.now();
  const answer = await client.chat.completions.create({ model: "m", messages, tools: TOOLS });
  const elapsed = performance.now() - started;
  assert.equal(answer.choices[0].message.tool_calls.length, 1000);
  assert.equal(answer.choices[0].message.tool_calls[0].function.arguments, big);
  assert.ok(await toolCalls(registry) <= D.limits.max_tool_calls);
  assert.equal(await failures(registry, D.tool_call_reasons.not_declared), 1);
  assert.equal(await inFlight(registry), 0);
  assert.ok(elapsed < 5000, `${elapsed.toFixed(0)} ms`);
});

test("uninstrumented again, parse() and create() are the SDK's own", async () => {
  const { registry } = freshTelemetry();
  instrumentOpenAI();
  uninstrumentOpenAI();
  const client = new OpenAI7({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  await client.chat.completions.parse({ model: "gpt-4o-mini@json_ok", messages, response_format: FORMAT });
  assert.equal(await requests(registry), 0);
});
