// Wrong arguments fail where they are written, with a message that says what to write instead
// (as the Python package's tests/test_misuse.py): nothing is accepted and then recorded wrong.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Registry } from "prom-client";
import {
  configure,
  jsonOutput,
  minWords,
  nonEmpty,
  oneOf,
  RetryPolicy,
  startMetricsServer,
  tracedGeneration,
  validators,
} from "../dist/index.js";
import { freshTelemetry, parseExposition, python } from "./helpers.mjs";

const traced = (options) => tracedGeneration(options, async () => "not json");

// ------------------------------------------------------------------ validate

for (const [shown, validate, message] of [
  ["[jsonOutput]", [jsonOutput], /validate: jsonOutput is the factory, not a validator; did you mean jsonOutput\(\)\?/],
  ["jsonOutput", jsonOutput, /did you mean jsonOutput\(\)\?/],
  ["[validators.jsonOutput]", [validators.jsonOutput], /did you mean jsonOutput\(\)\?/],
  ["[nonEmpty]", [nonEmpty], /did you mean nonEmpty\(\)\?/],
  ["[minWords]", [minWords], /did you mean minWords\(n\)\?/],
  ["[oneOf]", [oneOf], /did you mean oneOf\(\["label", \.\.\.\]\)\?/],
  ["[(result, other) => true]", [(result, other) => true], /takes 2 arguments and cannot be a validator: a validator takes one argument/],
  ["[async (result) => false]", [async (result) => false], /is async, and a promise would pass every result/],
  ['"json"', "json", /takes a validator or an array of validators, not a string \("json"\)/],
  ['["json"]', ["json"], /validate: "json" is not a validator/],
  ["3", 3, /takes a validator or an array of validators, got 3/],
  ["{ check: jsonOutput() }", { check: jsonOutput() }, /takes a validator or an array of validators, got \{ check: \[Function: invalid_json\] \}/],
]) {
  test(`validate: ${shown} is refused when the traced function is made`, () => {
    assert.throws(() => traced({ validate }), { name: "TypeError", message });
  });
}

test("validate: good validators are accepted", () => {
  function strictish(result, strict = false) {
    return strict ? result === "x" : Boolean(result);
  }
  for (const validate of [
    jsonOutput(),
    [nonEmpty(), minWords(3), oneOf(["a", "b"])],
    (result) => result !== "",
    [strictish, Boolean, validators.jsonOutput({ stripFences: true })],
    new Set([nonEmpty()]),
    null,
    [],
  ]) {
    traced({ validate });
  }
});

test("validate: [jsonOutput()] counts non-JSON output as silent/invalid_json", async () => {
  const t = freshTelemetry();
  await traced({ name: "extract", validate: [jsonOutput()] })();
  const failed = parseExposition(await t.registry.metrics()).find((s) => s.name === "genai_failures_total");
  assert.deepEqual([failed?.labels.failure_class, failed?.labels.reason, failed?.value], ["silent", "invalid_json", 1]);
});

// ------------------------------------------------------------------ retry

for (const [retry, name, message] of [
  ["3", "TypeError", /retry \}\) takes an attempt count, a RetryPolicy or its options, got "3"; Number\("3"\) if it is read from the environment/],
  [true, "TypeError", /got true/],
  [[3], "TypeError", /got \[ 3 \]/],
  [{ attempts: 3 }, "TypeError", /new RetryPolicy\(\) got unknown option "attempts"; the options are maxAttempts, deadline/],
  [0, "RangeError", /maxAttempts must be in 1\.\.100, got 0/],
  [10 ** 9, "RangeError", /maxAttempts must be in 1\.\.100, got 1000000000/],
  [2.5, "TypeError", /maxAttempts must be an integer in 1\.\.100, got 2\.5/],
]) {
  test(`retry: ${JSON.stringify(retry)} is refused when the traced function is made`, () => {
    assert.throws(() => traced({ retry }), { name, message });
  });
}

for (const [options, name, message] of [
  [{ maxAttempts: "3" }, "TypeError", /maxAttempts must be an integer in 1\.\.100, got "3"/],
  [{ deadline: Infinity }, "RangeError", /deadline must be seconds in \(0, 86400\] or null, got Infinity/],
  [{ deadline: NaN }, "RangeError", /got NaN/],
  [{ deadline: 0 }, "RangeError", /deadline/],
  [{ deadline: "60" }, "TypeError", /deadline must be seconds in \(0, 86400\] or null, got "60"/],
  [{ retryOn: "timeout" }, "TypeError", /retryOn takes a set of reasons, not a string: retryOn: \["timeout"\]/],
  [{ retryOn: 5 }, "TypeError", /retryOn takes a set of reasons, got 5/],
  [{ retryOn: ["bad_request"] }, "RangeError", /"bad_request" are not retryable reasons; choose from rate_limited/],
  [{ sleep: 1 }, "TypeError", /sleep must be a function, got 1/],
  [{ maxAttempt: 3 }, "TypeError", /unknown option "maxAttempt"/],
]) {
  test(`new RetryPolicy(${JSON.stringify(options)}) is refused`, () => {
    assert.throws(() => new RetryPolicy(options), { name, message });
  });
}

test("retry: good policies are accepted", () => {
  const policy = new RetryPolicy({ maxAttempts: 100, deadline: 86_400, retryOn: ["timeout", "connection"] });
  assert.deepEqual([...policy.retryOn].sort(), ["connection", "timeout"]);
  assert.equal(new RetryPolicy({ deadline: null }).deadline, null);
  for (const retry of [3, policy, { maxAttempts: 2, sleep: async () => {} }, undefined, null]) traced({ retry });
});

test("tracedGeneration refuses unknown options and a missing function", () => {
  assert.throws(() => traced({ validators: [jsonOutput()] }), {
    name: "TypeError",
    message: /tracedGeneration\(options, fn\) got unknown option "validators"; the options are name, operation, model, validate, retry/,
  });
  assert.throws(() => tracedGeneration({}, "fn"), { name: "TypeError", message: /takes a function, got "fn"/ });
  assert.throws(() => traced({ name: 42 }), { name: "TypeError", message: /\{ name \}\) takes a non-empty string, got 42/ });
});

// ------------------------------------------------------------------ configure

for (const [options, name, message] of [
  [{ bogus: 1 }, "TypeError", /configure\(\) got unknown option "bogus"; the options are registry, tracerProvider, namespace, maxLabelValues/],
  [{ maxLabelValues: "100" }, "TypeError", /maxLabelValues \}\) must be an integer in 1\.\.100000, got "100"/],
  [{ maxLabelValues: 0 }, "RangeError", /maxLabelValues \}\) must be in 1\.\.100000, got 0/],
  [{ maxLabelValues: 10 ** 9 }, "RangeError", /must be in 1\.\.100000, got 1000000000/],
  [{ registry: {} }, "TypeError", /registry \}\) takes a prom-client Registry, got \{\}/],
  [{ tracerProvider: "otel" }, "TypeError", /tracerProvider \}\) takes a TracerProvider \(with getTracer\(\)\), got "otel"/],
  [{ namespace: 5 }, "TypeError", /namespace \}\) must match \[a-zA-Z_\]\[a-zA-Z0-9_\]\*, got 5/],
  [{ namespace: "gen-ai" }, "TypeError", /got "gen-ai"/],
  [null, "TypeError", /configure\(\) takes an options object, got null/],
]) {
  test(`configure(${JSON.stringify(options)}) is refused`, () => {
    assert.throws(() => configure(options), { name, message });
  });
}

test("a refused configure() changes nothing: the settings before it stay", async () => {
  const registry = new Registry();
  configure({ registry });
  assert.throws(() => configure({ registry: new Registry(), bogus: 1 }), TypeError);
  await tracedGeneration({ name: "kept" }, async () => "ok")();
  const samples = parseExposition(await registry.metrics());
  assert.ok(samples.some((s) => s.name === "genai_requests_total" && s.labels.call_site === "kept" && s.value === 1));
});

// ------------------------------------------------------------------ startMetricsServer

test('startMetricsServer({ port: "abc" }) is refused, and no socket file "abc" is made', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "failsight-port-"));
  const cwd = process.cwd();
  process.chdir(dir);
  t.after(() => {
    process.chdir(cwd);
    rmSync(dir, { recursive: true, force: true });
  });
  await assert.rejects(startMetricsServer({ port: "abc" }), {
    name: "TypeError",
    message: /port \}\) must be an integer in 0\.\.65535 \(0 picks a free port\), got "abc"/,
  });
  assert.equal(existsSync(join(dir, "abc")), false);
  assert.deepEqual(readdirSync(dir), []);
});

for (const [options, name, message] of [
  [{ port: "9464" }, "TypeError", /got "9464"; Number\("9464"\) if it is read from the environment/],
  [{ port: 9464.5 }, "TypeError", /must be an integer in 0\.\.65535/],
  [{ port: -1 }, "RangeError", /port \}\) must be in 0\.\.65535, got -1/],
  [{ port: 65536 }, "RangeError", /got 65536/],
  [{ port: NaN }, "TypeError", /got NaN/],
  [{ host: "" }, "RangeError", /host \}\) is empty; give a host, e.g. 127\.0\.0\.1/],
  [{ host: 127 }, "TypeError", /host \}\) must be a string, got 127/],
  [{ host: "127.0.0.1 " }, "RangeError", /must be a host name or address, got "127\.0\.0\.1 "/],
  [{ registry: "default" }, "TypeError", /registry \}\) takes a prom-client Registry, got "default"/],
  [{ addr: "0.0.0.0" }, "TypeError", /got unknown option "addr"; the options are port, host, registry/],
]) {
  test(`startMetricsServer(${JSON.stringify(options)}) is refused`, async () => {
    await assert.rejects(startMetricsServer(options), { name, message });
  });
}

test("startMetricsServer({ port: 0 }) serves /metrics and reports its real port", async () => {
  const registry = new Registry();
  configure({ registry });
  const server = await startMetricsServer({ port: 0 });
  try {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    assert.notEqual(server.port, 0);
    const response = await fetch(server.url);
    assert.equal(response.status, 200);
    assert.match(await response.text(), /genai_requests_total/);
  } finally {
    await server.close();
  }
});

// ------------------------------------------------------------------ operation

for (const [operation, message] of [
  ["chatt", /tracedGeneration\(\{ operation: "chatt" \}\): did you mean "chat"\? The patch records chat, embeddings, image_generation, text_completion, video_generation/],
  ["text_completions", /did you mean "text_completion"\?/],
  ["chat_completions", /did you mean "chat"\?/],
  ["responses", /did you mean "chat"\?/],
  ["completion", /did you mean "text_completion"\?/],
  ["embedding", /did you mean "embeddings"\?/],
  ["images", /did you mean "image_generation"\?/],
  ["video", /did you mean "video_generation"\?/],
  ["Chat", /must be snake_case \(a-z, 0-9 and _, at most 64 characters\), as the operations the patch records: chat, embeddings/],
  ["chat-completions", /must be snake_case/],
  ["a".repeat(65), /must be snake_case/],
]) {
  test(`tracedGeneration({ operation: ${JSON.stringify(operation.slice(0, 20))} }) is refused when wrapping`, () => {
    assert.throws(() => traced({ operation }), { name: "RangeError", message });
  });
}

test("free-form snake_case operations are accepted, as the known ones", () => {
  for (const operation of ["rerank", "execute_tool", "image_edit", "a".repeat(64), "chat", "embeddings", "video_generation"]) {
    assert.equal(typeof traced({ operation }), "function", operation);
  }
});

test("the operations refused, and the one suggested, are Python's (failsight._decoration.check_operation)", () => {
  const names = [
    "chatt", "chats", "chat_completion", "text_completions", "image_generations", "imagegeneration", "embedd",
    "video_gen", "videogeneration", "embeding", "text_complete", "image_edit", "rerank", "execute_tool",
    "chat2", "c", "cha", "text", "image_variation", "video_remix", "embeddingss", "completion", "x_chat",
  ];
  const script =
    "import json, re, sys\nfrom failsight._decoration import check_operation\nout = {}\n" +
    "for name in json.loads(sys.argv[1]):\n    try:\n        check_operation(name); out[name] = None\n" +
    "    except ValueError as e:\n        m = re.search(r\"did you mean '([a-z_]+)'\", str(e)); out[name] = m.group(1) if m else 'snake_case'\n" +
    "print(json.dumps(out))";
  const run = spawnSync(python, ["-c", script, JSON.stringify(names)], { encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  const python_ = JSON.parse(run.stdout);
  const node = {};
  for (const name of names) {
    try {
      traced({ operation: name });
      node[name] = null;
    } catch (error) {
      node[name] = /did you mean "([a-z_]+)"/.exec(error.message)?.[1] ?? "snake_case";
    }
  }
  assert.deepEqual(node, python_);
});

// ------------------------------------------------------------------ the handle's arguments

/** FailsightWarnings emitted while `body` runs, as their messages. */
async function warningsOf(body) {
  const seen = [];
  const listen = (warning) => {
    if (warning.name === "FailsightWarning") seen.push(warning.message);
  };
  process.on("warning", listen);
  try {
    await body();
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
  } finally {
    process.off("warning", listen);
  }
  return seen;
}

async function sampleValue(registry, name, labels = {}) {
  let total = 0;
  for (const s of parseExposition(await registry.metrics())) {
    if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) total += s.value;
  }
  return total;
}

test("handle methods ignore wrong arguments, count them, and warn once per call site and method", async () => {
  const { currentGeneration } = await import("../dist/index.js");
  const { registry } = freshTelemetry();
  const site = (name) =>
    tracedGeneration({ name }, async () => {
      const handle = currentGeneration();
      for (let i = 0; i < 2; i++) {
        handle.recordUsage({ input: -1, output: 2.5, reasoning: "3" });
        handle.recordUsage(7);
        handle.recordFinishReason(42);
        handle.recordFinishReason("");
        handle.recordRetry("");
        handle.recordRetry("rate_limited", { statusCode: 42 });
        handle.recordRetry("rate_limited", { wait: -1 });
        handle.recordVideoStatus(7);
        handle.recordVideoStatus("failed", { jobId: 7 });
        handle.markFailure("bad", "x");
        handle.markFailure("soft", "");
        handle.setModel(3);
      }
      handle.recordUsage({ input: 4, output: -2 }); // the valid count is counted
    });
  const warnings = await warningsOf(async () => {
    await site("misuse_one")();
    await site("misuse_two")();
  });
  const methods = ["recordUsage", "recordFinishReason", "recordRetry", "recordVideoStatus", "markFailure", "setModel"];
  for (const name of ["misuse_one", "misuse_two"]) {
    const mine = warnings.filter((m) => m.endsWith(`(ignored; warned once for ${name})`));
    assert.deepEqual(mine.map((m) => /^failsight: (\w+)\(\)/.exec(m)?.[1]), methods, mine.join("\n"));
  }
  assert.equal(warnings.length, 2 * methods.length);
  assert.match(warnings[0], /recordUsage\(\) takes non-negative integers, got input: -1, output: 2\.5, reasoning: "3"/);
  assert.equal(await sampleValue(registry, "genai_requests_total", { failure_class: "none" }), 2);
  assert.equal(await sampleValue(registry, "genai_tokens_total"), 2 * 4);
  assert.equal(await sampleValue(registry, "genai_finish_reasons_total"), 0);
  assert.equal(await sampleValue(registry, "genai_retries_total"), 0);
  assert.equal(await sampleValue(registry, "genai_telemetry_errors_total", { stage: "record_usage" }), 2 * 5);
  assert.equal(await sampleValue(registry, "genai_telemetry_errors_total", { stage: "record_retry" }), 2 * 6);
  assert.equal(await sampleValue(registry, "genai_telemetry_errors_total", { stage: "mark_failure" }), 2 * 4);
});
