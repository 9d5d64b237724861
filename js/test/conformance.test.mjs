// The cross-language conformance suite, Node.js side: ../tests/conformance/cases.json, the file
// tests/test_conformance.py reads too. `expectedSeries` must stay alike its `expected_series`.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { SpanKind } from "@opentelemetry/api";
import OpenAI from "openai";
import { instrumentOpenAI, jsonOutput, minWords, nonEmpty, oneOf, RetryPolicy, tracedGeneration, uninstrumentOpenAI } from "../dist/index.js";
import { freshTelemetry, labelKey, repoRoot, snapshot, startFaultServer } from "./helpers.mjs";

const spec = JSON.parse(readFileSync(resolve(repoRoot, "tests", "conformance", "cases.json"), "utf8"));
const PROVIDER = "127.0.0.1";

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
  if (exp.ttft) add("genai_time_to_first_token_seconds_count", {}, exp.ttft);
  for (const [status, n] of Object.entries(exp.video_jobs ?? {})) {
    add("genai_video_jobs_total", { status }, n);
    add("genai_video_job_duration_seconds_count", { status }, n);
  }
  return new Map([...series].filter(([, v]) => v));
}

function makeValidators(specs = []) {
  return specs.map((v) => {
    switch (v.kind) {
      case "non_empty": return nonEmpty();
      case "json_output": return jsonOutput();
      case "one_of": return oneOf(v.labels);
      case "min_words": return minWords(v.n);
      default: throw new Error(`unknown validator kind ${v.kind}`);
    }
  });
}

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** One call of the case's shape (as `perform` in tests/test_conformance.py). */
export async function perform(client, call, headers) {
  const { shape, model } = call;
  const options = { headers };
  const messages = [{ role: "user", content: "hi" }];
  switch (shape) {
    case "chat":
      return (await client.chat.completions.create({ model, messages }, options)).choices[0].message.content;
    case "chat_stream_helper": {
      const runner = client.chat.completions.stream({ model, messages, stream_options: { include_usage: true } }, options);
      return (await runner.finalChatCompletion()).choices[0].message.content;
    }
    case "chat_stream":
    case "chat_stream_break": {
      const stream = await client.chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } }, options);
      let text = "";
      for await (const chunk of stream) {
        for (const choice of chunk.choices) text += choice.delta?.content ?? "";
        if (shape === "chat_stream_break") break;
      }
      return text;
    }
    case "responses":
      return (await client.responses.create({ model, input: "hi" }, options)).output_text;
    case "responses_stream": {
      const stream = await client.responses.create({ model, input: "hi", stream: true }, options);
      for await (const _event of stream) { /* drain */ }
      return null;
    }
    case "completions":
      return (await client.completions.create({ model, prompt: "hi" }, options)).choices[0].text;
    case "embeddings":
      return (await client.embeddings.create({ model, input: "hi" }, options)).data;
    case "images":
      return (await client.images.generate({ model, prompt: "a cat" }, options)).data;
    case "video": {
      let video = await client.videos.create({ model, prompt: "a cat" }, options);
      for (let i = 0; i < (call.max_polls ?? 5); i++) {
        if (TERMINAL.has(video.status)) return video.status;
        video = await client.videos.retrieve(video.id, options);
      }
      if (TERMINAL.has(video.status)) return video.status;
      const error = new Error("video still not done");
      error.name = "TimeoutError";
      throw error;
    }
    default:
      throw new Error(`unknown call shape ${shape}`);
  }
}

export async function runCase(c, baseURL) {
  const call = c.call;
  const client = new OpenAI({ baseURL, apiKey: "sk-test", maxRetries: call.max_retries ?? 0, timeout: (call.timeout ?? 10) * 1000 });
  const headers = call.keyed ? { "X-Failsight-Key": `${c.id}-${randomUUID()}` } : {};
  let fn = () => perform(client, call, headers);
  if (c.scope) {
    const retry = c.scope.retry ? new RetryPolicy({ maxAttempts: c.scope.retry, sleep: async () => {} }) : undefined;
    fn = tracedGeneration({ name: c.scope.name, validate: makeValidators(c.scope.validate), retry }, fn);
  }
  try {
    return { result: await fn(), error: undefined };
  } catch (error) {
    return { result: undefined, error: error ?? new Error("undefined thrown") };
  }
}

describe("conformance (tests/conformance/cases.json)", () => {
  let server;
  let telemetry;
  before(async () => {
    server = await startFaultServer(spec.server);
    telemetry = freshTelemetry();
    instrumentOpenAI();
  });
  after(async () => {
    uninstrumentOpenAI();
    await server?.stop();
  });

  for (const c of spec.cases) {
    test(c.id, async () => {
      telemetry.exporter.reset();
      const beforeSnap = await snapshot(telemetry.registry);
      const { error } = await runCase(c, server.baseURL);
      const afterSnap = await snapshot(telemetry.registry);
      assert.equal(error !== undefined, c.expect.raises ?? false, String(error?.stack ?? error));
      const deltas = new Map();
      for (const key of new Set([...beforeSnap.keys(), ...afterSnap.keys()])) {
        const name = JSON.parse(key)[0];
        if (name === "genai_in_flight_requests") {
          assert.equal(afterSnap.get(key) ?? 0, 0, `in-flight not back to 0: ${key}`);
          continue;
        }
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
