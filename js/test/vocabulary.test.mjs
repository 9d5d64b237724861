// The Node.js package reads src/failsight/vocabulary.json, the Python package's file: the build
// copies it byte for byte, vocabulary.ts loads it frozen, and each table of js/src is built from
// it (metrics, span attributes, operations, finish reasons, secret patterns through the
// Python-regex translator).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { test } from "node:test";
import { Registry } from "prom-client";
import { classifyError, classifyResult } from "../dist/classify.js";
import { categoryOf, filterOfFinishReason } from "../dist/filters.js";
import { STAGES } from "../dist/guard.js";
import { MetricSet } from "../dist/metrics.js";
import { OPERATIONS } from "../dist/operations.js";
import { ruleIdsMatching } from "../dist/redact.js";
import { translatePattern } from "../dist/regex.js";
import { ATTR, USAGE_ATTRIBUTES } from "../dist/spans.js";
import { StreamJudge } from "../dist/stream-judge.js";
import { failureOfFinishReason, normalizeFinishReason, normalizeVideoStatus, reasonForStatus } from "../dist/taxonomy.js";
import { parseVocabulary, VOCABULARY } from "../dist/vocabulary.js";
import { repoRoot } from "./helpers.mjs";

const SOURCE = resolve(repoRoot, "src", "failsight", "vocabulary.json");
const RAW = JSON.parse(readFileSync(SOURCE, "utf8"));

test("the build copies vocabulary.json into dist byte for byte", () => {
  const copied = readFileSync(resolve(repoRoot, "js", "dist", "vocabulary.json"));
  assert.ok(copied.equals(readFileSync(SOURCE)), "js/dist/vocabulary.json differs: run npm run build");
});

test("the loaded vocabulary is the file, frozen all the way down", () => {
  assert.deepEqual(JSON.parse(JSON.stringify(VOCABULARY)), RAW);
  assert.ok(Object.isFrozen(VOCABULARY));
  assert.ok(Object.isFrozen(VOCABULARY.reasons.hard));
  assert.ok(Object.isFrozen(VOCABULARY.operations.chat.node[0].path));
  assert.throws(() => {
    "use strict";
    VOCABULARY.reasons.hard.push("mine");
  }, TypeError);
  assert.equal(VOCABULARY.reasons.hard.includes("mine"), false);
});

test("a table has no prototype: an odd provider word is not one of Object's members", () => {
  assert.equal(Object.getPrototypeOf(VOCABULARY.video.statuses), null);
  // each of these read Object's own members off a plain-object table before
  assert.equal(normalizeVideoStatus("constructor"), "constructor");
  assert.equal(normalizeVideoStatus("__proto__"), "__proto__");
  assert.equal(normalizeFinishReason("constructor"), "other");
  assert.equal(filterOfFinishReason("constructor"), undefined);
  assert.equal(categoryOf("__proto__"), "other");
});

test("a file of another version, or no vocabulary at all, is refused with a clear error", () => {
  assert.throws(() => parseVocabulary(JSON.stringify({ ...RAW, version: 2 }), "v2.json"), {
    message: "failsight: v2.json is not a version 1 vocabulary file (version: 2)",
  });
  assert.throws(() => parseVocabulary("[1]", "list.json"), /list\.json is not a version 1 vocabulary file/);
  assert.throws(() => parseVocabulary("null"), /vocabulary\.json is not a version 1 vocabulary file/);
  assert.equal(parseVocabulary(JSON.stringify(RAW)).secrets.mask, "***");
});

// ------------------------------------------------------------------ finish reasons

test("finish reasons: label values as they are, providers' spellings through the aliases, the rest other", () => {
  const cases = [
    ["stop", "stop"], ["tool_calls", "tool_calls"], ["end_turn", "stop"], ["MAX_TOKENS", "length"],
    ["max_output_tokens", "length"], ["SAFETY", "content_filter"], ["Recitation", "content_filter"],
    [" Stop ", "stop"], ["STOP", "stop"], ["tool_use", "tool_calls"], ["refusal", "content_filter"],
    ["pause_turn", "other"], ["weird", "other"], ["", "other"], ["stop".padEnd(40, "x"), "other"],
    [3, "other"], [{}, "other"], [null, undefined], [undefined, undefined],
  ];
  for (const [value, expected] of cases) assert.equal(normalizeFinishReason(value), expected, String(value));
  // every alias of the file, in any case
  for (const aliases of Object.values(RAW.finish_reasons.aliases)) {
    for (const [spelling, value] of Object.entries(aliases)) {
      assert.equal(normalizeFinishReason(spelling), value, spelling);
      assert.equal(normalizeFinishReason(spelling.toUpperCase()), value, spelling);
    }
  }
  // a spelling is cut at 32 characters before it is looked up, as in Python
  assert.equal(normalizeFinishReason(`${"x".repeat(32)}stop`), "other");
});

test("which finish reasons fail comes from finish_reasons.failing", () => {
  assert.equal(failureOfFinishReason("length"), "length");
  assert.equal(failureOfFinishReason("content_filter"), "content_filter");
  assert.equal(failureOfFinishReason("stop"), undefined);
  assert.equal(failureOfFinishReason(undefined), undefined);
  const chat = (finish, content = "hi") => ({ choices: [{ finish_reason: finish, message: { role: "assistant", content } }] });
  assert.deepEqual(pick(classifyResult(chat("MAX_TOKENS"), "chat")), ["soft", "length", ["length"]]);
  assert.deepEqual(pick(classifyResult(chat("end_turn"), "chat")), ["none", undefined, ["stop"]]);
  assert.deepEqual(pick(classifyResult(chat("end_turn", ""), "chat")), ["soft", "empty_content", ["stop"]]);
  assert.deepEqual(pick(classifyResult(chat("SAFETY", ""), "chat")), ["soft", "content_filter", ["content_filter"]]);
  const judge = new StreamJudge("chat");
  judge.chunk({ choices: [{ delta: { content: "partial" }, finish_reason: "max_tokens" }] });
  assert.deepEqual(pick(judge.outcome(true)), ["soft", "length", ["length"]]);
});

test("an incomplete Response: its reason normalised like any finish reason", () => {
  const incomplete = (reason) => ({ status: "incomplete", incomplete_details: reason === undefined ? null : { reason }, output: [] });
  assert.deepEqual(pick(classifyResult(incomplete("max_output_tokens"), "responses")), ["soft", "length", ["length"]]);
  assert.deepEqual(pick(classifyResult(incomplete("content_filter"), "responses")), ["soft", "content_filter", ["content_filter"]]);
  assert.deepEqual(pick(classifyResult(incomplete("something_new"), "responses")), ["soft", "length", ["other"]]);
  assert.deepEqual(pick(classifyResult(incomplete(undefined), "responses")), ["soft", "length", ["other"]]);
});

function pick(o) {
  return [o.failureClass, o.reason, o.finishReasons];
}

// ------------------------------------------------------------------ the other tables

test("statuses: the named ones, then the 4xx/5xx/other fallbacks", () => {
  for (const [status, { reason }] of Object.entries(RAW.status_reasons)) assert.equal(reasonForStatus(Number(status)), reason);
  assert.equal(reasonForStatus(418), RAW.status_fallbacks["4xx"]);
  assert.equal(reasonForStatus(599), RAW.status_fallbacks["5xx"]);
  assert.equal(reasonForStatus(300), RAW.status_fallbacks.other);
  // an SDK error with a 3xx status (the openai Node SDK throws on any answer not ok)
  const redirected = Object.assign(new Error("300 status code (no body)"), { status: 302 });
  assert.deepEqual([classifyError(redirected).reason, classifyError(redirected).statusCode], [RAW.status_fallbacks.other, 302]);
  assert.equal(classifyError(Object.assign(new Error("x"), { status: 200 })).reason, "exception");
});

test("the metric set registers the vocabulary's metric table: names, types, help, labels, buckets", async () => {
  const registry = new Registry();
  const metrics = new MetricSet(registry, "ns");
  const found = new Map(registry.getMetricsAsArray().map((m) => [m.name, m]));
  assert.deepEqual([...found.keys()], RAW.metrics.map((m) => `ns_${m.name}`));
  for (const entry of RAW.metrics) {
    const metric = found.get(`ns_${entry.name}`);
    assert.equal(metric.help, entry.help, entry.name);
    assert.equal(metric.type, entry.type, entry.name);
    const labels = entry.common_labels ? [...RAW.labels.common, ...entry.labels] : entry.labels;
    assert.deepEqual(metric.labelNames, labels, entry.name);
    if (entry.buckets) assert.deepEqual(metric.upperBounds, entry.buckets, entry.name);
  }
  const exposed = await registry.getSingleMetricAsString("ns_telemetry_errors_total");
  for (const stage of STAGES) assert.ok(exposed.includes(`stage="${stage}"} 0`), stage);
  assert.deepEqual(STAGES, RAW.guard_stages);
  metrics.unregister();
  assert.equal(registry.getMetricsAsArray().length, 0);
});

test("span attributes and the operation table come from the vocabulary", () => {
  assert.equal(ATTR.requestModel, RAW.spans.gen_ai.request_model);
  assert.equal(ATTR.httpStatus, RAW.spans.gen_ai.http_status);
  assert.equal(ATTR.failureReason, RAW.spans.failsight.failure_reason);
  assert.equal(Object.keys(ATTR).length, Object.keys(RAW.spans.gen_ai).length + Object.keys(RAW.spans.failsight).length);
  assert.deepEqual({ ...USAGE_ATTRIBUTES }, RAW.spans.usage);
  const expected = Object.values(RAW.operations).flatMap((entry) =>
    entry.node.map((sdk) => [sdk.path, sdk.methods, sdk.body_arg, entry.operation, entry.kind, entry.api_type, entry.role === "poll"]),
  );
  assert.deepEqual(
    OPERATIONS.map((p) => [[...p.path], [...p.methods], p.bodyArg, p.op.name, p.op.kind, p.op.apiType, p.op.poll]),
    expected,
  );
});

// ------------------------------------------------------------------ the Python-regex translator

test("translatePattern: named groups, case-insensitive groups, Python's classes, the dot", () => {
  const t = (pattern, macros = {}) => translatePattern(pattern, macros);
  assert.equal(t("(?P<name>ab)"), "(?<name>ab)");
  assert.equal(t("(?i:ab)c"), "[aA][bB]c");
  assert.equal(t("(?i:ab|c)"), "(?:[aA][bB]|[cC])"); // alternatives keep their group
  assert.equal(t("(?i:ab)?"), "(?:[aA][bB])?"); // so does a quantified group
  assert.equal(t("(?i:sk)"), "[sS\u017f][kK\u212a]"); // Python folds the long s and the Kelvin sign too
  assert.equal(t("a.b"), "a[^\\n]b");
  assert.equal(t("[.]"), "[.]");
  assert.equal(t("\\d\\w\\W"), "\\p{Nd}[\\p{L}\\p{N}_][^\\p{L}\\p{N}_]");
  assert.match(t("\\s"), /^\[\\t-\\r.*\\u3000\]$/);
  assert.match(t("[^\\s\"]"), /^\[\^\\t-\\r.*\\u3000"\]$/);
  assert.equal(t("[a-z\\-]\\.\\*"), "[a-z\\-]\\.\\*");
  assert.equal(t("(?i:sha\\d*)"), "[sS\u017f][hH][aA]\\p{Nd}*");
  assert.equal(t("(?<!\\w)x(?<=y)"), "(?<![\\p{L}\\p{N}_])x(?<=y)");
});

test("translatePattern: macros, word lists, and what it cannot translate", () => {
  assert.equal(translatePattern("{{key}}{4,}", { key: "[A-Z\\-]" }), "[A-Z\\-]{4,}");
  assert.equal(translatePattern("{{words:ab,cd}}", {}), "(?<![A-Za-z0-9])(?:[aA][bB]|[cC][dD])");
  for (const bad of ["\\bkey", "\\S+", "(?x:a)", "(?i:(?P<n>a))", "{{nope}}", "(?i:a", "a\\"]) {
    assert.throws(() => translatePattern(bad, {}), /failsight: .*secret pattern/, bad);
  }
});

test("the translated patterns match as Python's do: text in other scripts and spaces", () => {
  // Python's \s holds U+0085 and U+001C; JavaScript's does not, the translation does
  assert.deepEqual(ruleIdsMatching("Bearer\u0085abcdefgh"), ["bearer"]);
  assert.deepEqual(ruleIdsMatching("Bearer\u001cabcdefgh"), ["bearer"]);
  // Python's \w holds letters of any script: "ésk-…" is a glued key, not a word-start one
  assert.deepEqual(ruleIdsMatching("ésk-abcdef1"), []);
  assert.deepEqual(ruleIdsMatching(" sk-abcdef1"), ["dash_key"]);
  // the long s is a case of s to Python's (?i:…), so "ſecret" is no key word (the words' first letters are ASCII)
  assert.deepEqual(ruleIdsMatching("ſecret: abcd1234"), []);
  assert.deepEqual(ruleIdsMatching("SECRET: abcd1234"), ["name_value"]);
});

test("every secret rule finds at least one of the vocabulary's cases", () => {
  const hits = new Set(RAW.secrets.cases.flatMap((c) => ruleIdsMatching(c.text)));
  for (const rule of RAW.secrets.rules) assert.ok(hits.has(rule.id), rule.id);
});
