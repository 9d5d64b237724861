// The declared-output judge (declared.ts), its JSON Schema checks (schemas.ts) and the agent
// errors (agents.ts), pure: each check and its order, the bounds shared with Python
// (vocabulary.json `declared.limits`), hostile inputs (10 MB arguments, 1,000 tool calls, deep
// and recursive schemas, remote $ref) judged in bounded time without throwing and without
// touching the caller's objects, and the degraded mode without ajv.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { agentOutcome, classifyScopeError } from "../dist/agents.js";
import { declaredOf, judge, MAX_PARSED_LENGTH, MAX_TOOL_CALLS, StreamAnswer } from "../dist/declared.js";
import { available, cacheSize, check, clearCache, CACHE_SIZE, MAX_SCHEMA_DEPTH } from "../dist/schemas.js";
import { deepFreeze, VOCABULARY } from "../dist/vocabulary.js";

const D = VOCABULARY.declared;
const R = D.tool_call_reasons;
const WEATHER = { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false };
const chatTools = (extra = {}, strict = false) => ({
  tools: [{ type: "function", function: { name: "get_weather", parameters: WEATHER, ...(strict ? { strict: true } : {}) } }],
  ...extra,
});
const call = (name, args) => ({ type: "function", id: "c1", function: { name, arguments: args } });
const chatAnswer = (calls, content = null) => ({ choices: [{ message: { role: "assistant", content, tool_calls: calls } }] });
const judgeChat = (request, answer) => judge(declaredOf(request, "chat"), answer, "chat");

afterEach(() => clearCache());

test("a request that declares nothing is not judged: declaredOf is undefined", () => {
  assert.equal(declaredOf({ model: "m", messages: [] }, "chat"), undefined);
  assert.equal(declaredOf({ model: "m", tools: [] }, "chat"), undefined);
  assert.equal(declaredOf({ response_format: { type: "text" } }, "chat"), undefined);
  assert.equal(declaredOf({ text: { format: { type: "text" } } }, "responses"), undefined);
  assert.equal(declaredOf(null, "chat"), undefined);
});

test("each tool-call outcome, and the first failure names the request", () => {
  assert.deepEqual(judgeChat(chatTools(), chatAnswer([call("get_weather", '{"city":"Paris"}')])), {
    reason: undefined, calls: [["get_weather", "ok"]], failedTool: undefined, errors: [],
  });
  assert.equal(judgeChat(chatTools(), chatAnswer([call("get_weather", "{oops")])).reason, R.not_json);
  assert.equal(judgeChat(chatTools(), chatAnswer([call("get_weather", "NaN")])).reason, R.not_json);
  assert.equal(judgeChat(chatTools(), chatAnswer([call("get_weather", '{"town":"Paris"}')])).reason, R.invalid_arguments);
  assert.equal(judgeChat(chatTools(), chatAnswer([call("get_weather", "[1]")])).reason, R.invalid_arguments);
  assert.equal(judgeChat(chatTools({}, true), chatAnswer([call("get_weather", '{"town":"Paris"}')])).reason, R.strict_violation);
  const two = judgeChat(chatTools(), chatAnswer([call("search", "{}"), call("get_weather", "{oops")]));
  assert.equal(two.reason, R.not_declared);
  assert.equal(two.failedTool, "search");
  assert.deepEqual(two.calls, [[D.undeclared_tool, "not_declared"], ["get_weather", "not_json"]]);
  // Arguments a gateway sends decoded are judged as the object they are.
  assert.equal(judgeChat(chatTools(), chatAnswer([call("get_weather", { city: "Paris" })])).reason, undefined);
});

test("tool_choice: required, a named function, allowed_tools in mode required", () => {
  const text = chatAnswer(undefined, "It is sunny.");
  assert.equal(judgeChat(chatTools({ tool_choice: "required" }), text).reason, D.missing_reason);
  assert.equal(judgeChat(chatTools({ tool_choice: "auto" }), text).reason, undefined);
  const named = chatTools({ tool_choice: { type: "function", function: { name: "get_weather" } } });
  assert.equal(judgeChat(named, text).reason, D.missing_reason);
  assert.equal(judgeChat(named, chatAnswer([call("get_weather", '{"city":"P"}')])).reason, undefined);
  const allowed = chatTools({ tool_choice: { type: "allowed_tools", allowed_tools: { mode: "required", tools: [] } } });
  assert.equal(judgeChat(allowed, text).reason, D.missing_reason);
});

test("structured output: json_schema and json_object, chat and Responses; a refusal is not judged", () => {
  const schema = { response_format: { type: "json_schema", json_schema: { name: "w", schema: WEATHER, strict: true } } };
  assert.equal(judgeChat(schema, chatAnswer(undefined, '{"city":"Paris"}')).reason, undefined);
  assert.equal(judgeChat(schema, chatAnswer(undefined, "Paris")).reason, D.output_reasons.not_json);
  assert.equal(judgeChat(schema, chatAnswer(undefined, '{"town":"Paris"}')).reason, D.output_reasons.schema_mismatch);
  assert.equal(judgeChat(schema, { choices: [{ message: { content: "no", refusal: "I can't" } }] }).reason, undefined);
  const object = { response_format: { type: "json_object" } };
  assert.equal(judgeChat(object, chatAnswer(undefined, '{"town":"Paris"}')).reason, undefined);
  assert.equal(judgeChat(object, chatAnswer(undefined, "town: Paris")).reason, D.output_reasons.not_json);
  const responses = { text: { format: { type: "json_schema", name: "w", schema: WEATHER, strict: true } } };
  const out = (text) => ({ output: [{ type: "message", content: [{ type: "output_text", text }] }] });
  const d = declaredOf(responses, "responses");
  assert.equal(judge(d, out('{"city":"Paris"}'), "responses").reason, undefined);
  assert.equal(judge(d, out("{"), "responses").reason, D.output_reasons.not_json);
  assert.equal(judge(d, out('{"city":1}'), "responses").reason, D.output_reasons.schema_mismatch);
});

test("Responses tools: flat declarations, function_call items, a hosted tool's call counts as a call", () => {
  const request = { tools: [{ type: "function", name: "get_weather", parameters: WEATHER, strict: true }], tool_choice: "required" };
  const d = declaredOf(request, "responses");
  const fc = (name, args) => ({ type: "function_call", name, arguments: args, call_id: "c" });
  assert.equal(judge(d, { output: [fc("get_weather", '{"city":"P"}')] }, "responses").reason, undefined);
  assert.equal(judge(d, { output: [fc("get_weather", '{"town":"P"}')] }, "responses").reason, R.strict_violation);
  assert.equal(judge(d, { output: [fc("lookup", "{}")] }, "responses").reason, R.not_declared);
  assert.equal(judge(d, { output: [{ type: "reasoning" }] }, "responses").reason, D.missing_reason);
  assert.equal(judge(d, { output: [{ type: "web_search_call" }] }, "responses").reason, undefined);
});

test("streams: tool-call argument deltas assembled by index; the Responses final event", () => {
  const d = declaredOf(chatTools(), "chat");
  const stream = new StreamAnswer("chat", false);
  const delta = (index, fn) => ({ choices: [{ index: 0, delta: { tool_calls: [{ index, function: fn }] } }] });
  stream.chunk(delta(0, { name: "get_weather", arguments: '{"ci' }));
  stream.chunk(delta(1, { name: "get_", arguments: "{" }));
  stream.chunk(delta(0, { arguments: 'ty":"Paris"}' }));
  stream.chunk(delta(1, { name: "weather", arguments: "}" }));
  stream.chunk({ choices: [{ index: 0, delta: {}, finish_reason: "tool_calls" }] });
  const judgement = judge(d, stream.answer(), "chat");
  assert.deepEqual(judgement.calls, [["get_weather", "ok"], ["get_weather", "invalid_arguments"]]);
  const responses = new StreamAnswer("responses", true);
  responses.chunk({ type: "response.output_text.delta", delta: "x" });
  assert.equal(responses.answer(), undefined);
  responses.chunk({ type: "response.completed", response: { output: [] } });
  assert.deepEqual(responses.answer(), { output: [] });
});

test("hostile: 10 MB of arguments are neither parsed nor counted, in bounded time", () => {
  const big = `{"city":"${"x".repeat(10 * 1024 * 1024)}"}`;
  const started = performance.now();
  const judgement = judgeChat(chatTools(), chatAnswer([call("get_weather", big), call("get_weather", '{"city":"P"}')]));
  assert.deepEqual(judgement.calls, [["get_weather", "ok"]]);
  assert.equal(judgement.reason, undefined);
  // A string just under the bound is parsed, but too long to validate: judged as JSON only.
  const large = `{"town":"${"x".repeat(MAX_PARSED_LENGTH - 20)}"}`;
  assert.deepEqual(judgeChat(chatTools(), chatAnswer([call("get_weather", large)])).calls, [["get_weather", "ok"]]);
  // The budget is per answer: a second such string is past it.
  assert.equal(judgeChat(chatTools(), chatAnswer([call("get_weather", large), call("get_weather", large)])).calls.length, 1);
  // A streamed 10 MB argument is kept to the bound, not whole.
  const stream = new StreamAnswer("chat", false);
  for (let i = 0; i < 100; i++) stream.chunk({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: "x".repeat(100_000) } }] } }] });
  const args = stream.answer().choices[0].message.tool_calls[0].function.arguments;
  assert.ok(args.length > MAX_PARSED_LENGTH && args.length <= MAX_PARSED_LENGTH + 100_000, String(args.length));
  assert.ok(performance.now() - started < 2000, `${performance.now() - started} ms`);
});

test("hostile: 1,000 tool calls in one answer, at most max_tool_calls judged", () => {
  const calls = Array.from({ length: 1000 }, (_, i) => call(i % 2 ? "get_weather" : `tool_${i}`, '{"city":"P"}'));
  const started = performance.now();
  const judgement = judgeChat(chatTools(), chatAnswer(calls));
  assert.equal(judgement.calls.length, MAX_TOOL_CALLS);
  assert.equal(judgement.reason, R.not_declared);
  assert.equal(judgement.failedTool, "tool_0");
  const stream = new StreamAnswer("chat", false);
  for (let i = 0; i < 1000; i++) stream.chunk({ choices: [{ index: 0, delta: { tool_calls: [{ index: i, function: { name: "get_weather", arguments: "{}" } }] } }] });
  assert.equal(stream.answer().choices[0].message.tool_calls.length, MAX_TOOL_CALLS);
  assert.ok(performance.now() - started < 2000, `${performance.now() - started} ms`);
});

test("hostile: deep, recursive and huge schemas, deep instances, remote $ref: never thrown, never fetched", () => {
  let deep = { type: "object" };
  for (let i = 0; i < MAX_SCHEMA_DEPTH + 10; i++) deep = { type: "object", properties: { a: deep } };
  assert.deepEqual(check(deep, {}), [undefined, undefined]); // past the bounds: not checked
  const huge = { type: "object", properties: Object.fromEntries(Array.from({ length: 6000 }, (_, i) => [`p${i}`, { type: "string" }])) };
  const size = cacheSize();
  assert.deepEqual(check(huge, {}), [undefined, undefined]);
  assert.equal(cacheSize(), size + 1); // remembered as past the bounds: not walked again
  assert.deepEqual(check(huge, {}), [undefined, undefined]);
  assert.equal(cacheSize(), size + 1);
  const cyclic = { type: "object", properties: {} };
  cyclic.properties.self = cyclic; // an object graph, not JSON: past the bounds
  assert.deepEqual(check(cyclic, {}), [undefined, undefined]);
  // A recursive schema ($ref to itself) over an instance nested 50,000 levels: an error, returned.
  const recursive = { type: "array", items: { $ref: "#" } };
  let nested = [];
  for (let i = 0; i < 50_000; i++) nested = [nested];
  const [valid, error] = check(recursive, nested);
  assert.equal(valid, undefined);
  assert.ok(error instanceof RangeError, String(error));
  assert.deepEqual(check(recursive, [[[]]]), [true, undefined]);
  // A remote $ref: ajv has no loader, so the compilation fails (once: the failure is cached).
  const originalFetch = globalThis.fetch;
  let fetched = 0;
  globalThis.fetch = async () => { fetched += 1; throw new Error("fetched"); };
  try {
    const remote = { type: "object", properties: { city: { $ref: "https://example.com/city.json" } } };
    const [ok, refused] = check(remote, { city: "P" });
    assert.equal(ok, undefined);
    assert.match(String(refused), /can't resolve reference|resolve/i);
    assert.equal(check(remote, { city: "P" })[1], refused); // the same error: not compiled again
    // Judged with it: names and JSON-ness only, and the error once per judgement however many calls.
    const request = { tools: [{ type: "function", function: { name: "get_weather", parameters: remote } }] };
    const judgement = judgeChat(request, chatAnswer([call("get_weather", '{"city":1}'), call("get_weather", "{}"), call("get_weather", "{x")]));
    assert.deepEqual(judgement.calls.map(([, o]) => o), ["ok", "ok", "not_json"]);
    assert.equal(judgement.errors.length, 1);
  } finally {
    globalThis.fetch = originalFetch;
  }
  assert.equal(fetched, 0);
});

test("the caller's request and answer are not touched (frozen: any write would throw)", () => {
  const request = deepFreeze(chatTools({ tool_choice: "required", response_format: { type: "json_schema", json_schema: { name: "w", schema: WEATHER } } }));
  const answer = deepFreeze(chatAnswer([call("get_weather", '{"town":"P"}')], '{"city":"P"}'));
  const before = JSON.stringify([request, answer]);
  assert.equal(judgeChat(request, answer).reason, R.invalid_arguments);
  assert.equal(JSON.stringify([request, answer]), before);
  // A hostile answer (getters that throw) throws out of the pure judge; judged.ts guards it.
  const hostile = { get choices() { throw new Error("boom"); } };
  assert.equal(judgeChat(chatTools(), hostile).reason, undefined); // field() reads it as absent
});

test("validators are compiled once per schema object, in an LRU of schema_cache_size", () => {
  assert.equal(cacheSize(), 0);
  const schema = { type: "object", required: ["a"] };
  for (let i = 0; i < 5; i++) assert.deepEqual(check(schema, { a: 1 }), [true, undefined]);
  assert.equal(cacheSize(), 1);
  // A schema built afresh each call (equal, not the same object) is another entry: never hashed.
  for (let i = 0; i < CACHE_SIZE + 50; i++) check({ type: "object", required: ["a"] }, {});
  assert.equal(cacheSize(), CACHE_SIZE);
  // Keywords of both dialects: $defs (2020-12, the default), definitions with draft-07.
  assert.deepEqual(check({ $defs: { s: { type: "string" } }, properties: { a: { $ref: "#/$defs/s" } } }, { a: 1 }), [false, undefined]);
  const draft7 = { $schema: "http://json-schema.org/draft-07/schema#", definitions: { s: { type: "string" } }, properties: { a: { $ref: "#/definitions/s" } } };
  assert.deepEqual(check(draft7, { a: "x" }), [true, undefined]);
  // uniqueItems judged up to max_unique_items, formats not asserted, booleans as schemas.
  assert.deepEqual(check({ uniqueItems: true }, [{ a: 1, b: 2 }, { b: 2, a: 1 }]), [false, undefined]);
  assert.deepEqual(check({ uniqueItems: true }, Array.from({ length: 2000 }, () => 1)), [true, undefined]);
  assert.deepEqual(check({ type: "string", format: "email" }, "not an email"), [true, undefined]);
  assert.deepEqual(check(false, 1), [false, undefined]);
  // Schemas built afresh with the same $id: each compiles (ajv keeps none of them registered).
  for (let i = 0; i < 3; i++) assert.deepEqual(check({ $id: "https://example.com/w", type: "string" }, 1), [false, undefined]);
});

test("without ajv: names, tool_choice and JSON-ness judged, schemas not; said once", async () => {
  clearCache({ unavailable: true });
  const warnings = [];
  const listen = (w) => warnings.push(w);
  process.on("warning", listen);
  try {
    assert.equal(available(), false);
    assert.equal(judgeChat(chatTools(), chatAnswer([call("get_weather", '{"town":"P"}')])).reason, undefined);
    assert.equal(judgeChat(chatTools(), chatAnswer([call("get_weather", "{")])).reason, R.not_json);
    assert.equal(judgeChat(chatTools(), chatAnswer([call("other", "{}")])).reason, R.not_declared);
    assert.equal(judgeChat(chatTools({ tool_choice: "required" }), chatAnswer(undefined, "hi")).reason, D.missing_reason);
    const schema = { response_format: { type: "json_schema", json_schema: { name: "w", schema: WEATHER } } };
    assert.equal(judgeChat(schema, chatAnswer(undefined, '{"town":"P"}')).reason, undefined);
    assert.equal(judgeChat(schema, chatAnswer(undefined, "P")).reason, D.output_reasons.not_json);
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
  } finally {
    process.off("warning", listen);
  }
  const ours = warnings.filter((w) => /ajv could not be loaded/.test(w.message));
  assert.equal(ours.length, 1, warnings.map((w) => w.message).join("\n"));
  assert.equal(ours[0].name, "FailsightWarning");
});

test("agent errors by constructor name anywhere in the prototype chain; anything else classified as before", () => {
  const named = (name) => ({ [name]: class extends Error {} })[name];
  const MaxTurns = named("MaxTurnsExceededError");
  class Mine extends MaxTurns {}
  assert.deepEqual([agentOutcome(new Mine("x")).failureClass, agentOutcome(new Mine("x")).reason], ["hard", "agent_max_turns"]);
  assert.equal(agentOutcome(new Mine("x")).errorType, "Mine");
  assert.equal(agentOutcome(new (named("ModelBehaviorError"))()).failureClass, "silent");
  assert.equal(agentOutcome(new (named("InputGuardrailTripwireTriggered"))()).reason, "input_guardrail");
  assert.equal(agentOutcome(new (named("ToolOutputGuardrailTripwireTriggered"))()).reason, "output_guardrail");
  assert.equal(agentOutcome(new Error("x")), undefined);
  assert.equal(agentOutcome("MaxTurnsExceededError"), undefined);
  // An error merely named so (not its class) is an ordinary error: class names decide, as in Python.
  const renamed = new Error("x");
  renamed.name = "MaxTurnsExceededError";
  assert.equal(agentOutcome(renamed), undefined);
  assert.equal(classifyScopeError(renamed).reason, "exception");
  const hostile = new Proxy(new Error("x"), { getPrototypeOf() { throw new Error("boom"); } });
  assert.equal(agentOutcome(hostile), undefined);
});
