// Streams finish exactly once; aborted and abandoned requests leave in-flight at 0; a tracer that
// throws changes nothing the caller sees; uninstrument restores the SDK's own methods.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import OpenAI, { APIUserAbortError } from "openai";
import { VERSION as VERSION7 } from "openai/version";
import OpenAI6 from "openai6";
import { VERSION as VERSION6 } from "openai6/version";
import { Registry } from "prom-client";
import { configure, instrumentOpenAI, startMetricsServer, tracedGeneration, uninstrumentOpenAI } from "../dist/index.js";
import { freshTelemetry, parseExposition, startFaultServer } from "./helpers.mjs";

let server;
before(async () => {
  server = await startFaultServer({});
});
after(async () => {
  await server?.stop();
});

async function value(registry, name, labels = {}) {
  let total = 0;
  for (const s of parseExposition(await registry.metrics())) {
    if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) total += s.value;
  }
  return total;
}

const messages = [{ role: "user", content: "hi" }];

// Both majors of the peer range: the newest, and the one before (the `openai6` alias).
for (const [sdk, version] of [[OpenAI, VERSION7], [OpenAI6, VERSION6]]) {
  test(`a stream aborted with its AbortController ends once, not a failure, in-flight 0 (openai ${version})`, async () => {
    const t = freshTelemetry();
    const client = new sdk({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
    instrumentOpenAI(client);
    try {
      const stream = await client.chat.completions.create({ model: "gpt-4o-mini@ok", messages, stream: true });
      for await (const _chunk of stream) {
        stream.controller.abort();
      }
      assert.equal(await value(t.registry, "genai_requests_total"), 1);
      assert.equal(await value(t.registry, "genai_requests_total", { failure_class: "none" }), 1);
      assert.equal(await value(t.registry, "genai_in_flight_requests"), 0);
    } finally {
      uninstrumentOpenAI(client);
    }
  });

  test(`a request aborted before its answer leaves in-flight at 0 (openai ${version})`, async () => {
    const t = freshTelemetry();
    const client = new sdk({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
    instrumentOpenAI(client);
    try {
      const controller = new AbortController();
      const pending = client.chat.completions.create({ model: "gpt-4o-mini@timeout", messages }, { signal: controller.signal });
      setTimeout(() => controller.abort(), 50);
      await assert.rejects(pending, (e) => e instanceof APIUserAbortError || e?.constructor?.name === "APIUserAbortError");
      assert.equal(await value(t.registry, "genai_in_flight_requests"), 0);
      assert.equal(await value(t.registry, "genai_requests_total"), 1);
      // cancelled by its caller: the call ends, but it is no failure of the API
      assert.equal(await value(t.registry, "genai_failures_total"), 0);
    } finally {
      uninstrumentOpenAI(client);
    }
  });
}

test("an abandoned stream is finished when collected: in-flight back to 0", { skip: typeof globalThis.gc !== "function" && "needs --expose-gc" }, async () => {
  const t = freshTelemetry();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  instrumentOpenAI(client);
  try {
    await (async () => {
      const stream = await client.chat.completions.create({ model: "gpt-4o-mini@ok", messages, stream: true });
      const it = stream[Symbol.asyncIterator]();
      await it.next(); // one chunk, then dropped without close
    })();
    assert.equal(await value(t.registry, "genai_in_flight_requests"), 1);
    for (let i = 0; i < 20 && (await value(t.registry, "genai_in_flight_requests")) !== 0; i++) {
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await value(t.registry, "genai_in_flight_requests"), 0);
    assert.equal(await value(t.registry, "genai_requests_total", { failure_class: "none" }), 1);
  } finally {
    uninstrumentOpenAI(client);
  }
});

test("a tracer that throws changes nothing the caller sees, and no counter", async () => {
  const registry = new Registry();
  const broken = { getTracer: () => ({ startSpan: () => { throw new Error("tracer down"); }, startActiveSpan: () => { throw new Error("tracer down"); } }) };
  configure({ registry, tracerProvider: broken });
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  instrumentOpenAI(client);
  try {
    const answer = await tracedGeneration({ name: "broken_tracer" }, async () =>
      (await client.chat.completions.create({ model: "gpt-4o-mini@ok", messages })).choices[0].message.content,
    )();
    assert.equal(typeof answer, "string");
    await assert.rejects(client.chat.completions.create({ model: "gpt-4o-mini@http_429", messages }), (e) => e.status === 429);
    assert.equal(await value(registry, "genai_requests_total", { call_site: "broken_tracer", failure_class: "none" }), 1);
    assert.equal(await value(registry, "genai_requests_total", { call_site: "unscoped", failure_class: "hard" }), 1);
    assert.equal(await value(registry, "genai_in_flight_requests"), 0);
    assert.ok((await value(registry, "genai_telemetry_errors_total", { stage: "span" })) >= 1);
  } finally {
    uninstrumentOpenAI(client);
  }
});

test("instrument twice is harmless; uninstrument restores the SDK's own methods", () => {
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test" });
  const proto = Object.getPrototypeOf(client.chat.completions);
  const own = proto.create;
  const fetchBefore = client.fetch;
  instrumentOpenAI(client);
  instrumentOpenAI(client);
  assert.notEqual(client.chat.completions.create, own);
  uninstrumentOpenAI(client);
  assert.equal(client.chat.completions.create, own);
  assert.ok(!Object.prototype.hasOwnProperty.call(client.chat.completions, "create"));
  assert.equal(client.fetch, fetchBefore);
  instrumentOpenAI();
  instrumentOpenAI();
  assert.notEqual(proto.create, own);
  uninstrumentOpenAI();
  assert.equal(proto.create, own);
});

test("withResponse() and the stream() helper keep working", async () => {
  const t = freshTelemetry();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  instrumentOpenAI(client);
  try {
    const { data, response } = await client.chat.completions.create({ model: "gpt-4o-mini@ok", messages }).withResponse();
    assert.equal(response.status, 200);
    assert.equal(data.choices[0].finish_reason, "stop");
    const runner = client.chat.completions.stream({ model: "gpt-4o-mini@length", messages });
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].finish_reason, "length");
    assert.equal(await value(t.registry, "genai_failures_total", { reason: "length" }), 1);
    assert.equal(await value(t.registry, "genai_requests_total"), 2);
  } finally {
    uninstrumentOpenAI(client);
  }
});

test("startMetricsServer serves /metrics on loopback", async () => {
  const t = freshTelemetry();
  const metrics = await startMetricsServer({ port: 0 });
  try {
    assert.match(metrics.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const text = await (await fetch(metrics.url)).text();
    assert.match(text, /# TYPE genai_requests_total counter/);
    assert.match(text, /genai_telemetry_errors_total\{stage="span"\} 0/);
    void t;
  } finally {
    await metrics.close();
  }
});
