// Usage a stream reported is counted, whatever ends the stream: the server sends the answer,
// its finish reason and its usage, then drops the connection before `[DONE]` (the caller gets
// `TypeError: terminated` or an APIConnectionError); or usage comes on every chunk and the
// stream breaks mid-way. Counted once, and wasted (the request failed: hard, connection).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { VERSION as VERSION7 } from "openai/version";
import OpenAI6 from "openai6";
import { VERSION as VERSION6 } from "openai6/version";
import { instrumentOpenAI, uninstrumentOpenAI } from "../dist/index.js";
import { freshTelemetry, startFaultServer, value } from "./helpers.mjs";

let server;
before(async () => {
  server = await startFaultServer({});
});
after(async () => {
  await server?.stop();
});

const messages = [{ role: "user", content: "hi" }];
// The fault server's fixed usage (failsight.testing.USAGE).
const FULL = { input: 11, output: 9, reasoning: 4, cached_input: 3 };
// `drop_mid_stream_usage`: three chunks, each with the usage so far (0, 1, 2 output tokens).
const SO_FAR = { input: 11, output: 2 };
const OPERATION = { chat: "chat", completions: "text_completion", responses: "chat" };

function create(client, api, scenario) {
  const model = `gpt-4o-mini@${scenario}`;
  if (api === "chat") return client.chat.completions.create({ model, messages, stream: true });
  if (api === "completions") return client.completions.create({ model, prompt: "hi", stream: true });
  return client.responses.create({ model, input: "hi", stream: true });
}

async function readUntilError(client, api, scenario) {
  const seen = [];
  const stream = await create(client, api, scenario);
  await assert.rejects(
    (async () => {
      for await (const item of stream) seen.push(item);
    })(),
    (e) => e instanceof Error,
  );
  return seen;
}

async function assertCounted(registry, operation, tokens) {
  const labels = { operation, call_site: "unscoped" };
  for (const [tokenType, count] of Object.entries(tokens)) {
    assert.equal(await value(registry, "genai_tokens_total", { token_type: tokenType, ...labels }), count, tokenType);
    const wasted = { token_type: tokenType, failure_class: "hard", reason: "connection", ...labels };
    assert.equal(await value(registry, "genai_wasted_tokens_total", wasted), count, tokenType);
  }
  const total = Object.values(tokens).reduce((a, b) => a + b, 0);
  assert.equal(await value(registry, "genai_tokens_total"), total);
  assert.equal(await value(registry, "genai_wasted_tokens_total"), total);
  assert.equal(await value(registry, "genai_failures_total", { reason: "connection", ...labels }), 1);
  assert.equal(await value(registry, "genai_in_flight_requests"), 0);
}

// Both majors of the peer range: the newest, and the one before (the `openai6` alias).
for (const [sdk, version] of [[OpenAI, VERSION7], [OpenAI6, VERSION6]]) {
  for (const api of ["chat", "completions", "responses"]) {
    test(`${api}: usage, then the connection drops: counted and wasted (openai ${version})`, async () => {
      const t = freshTelemetry();
      const client = new sdk({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
      instrumentOpenAI(client);
      try {
        const seen = await readUntilError(client, api, "drop_after_usage");
        assert.ok(seen.length > 0);
        await assertCounted(t.registry, OPERATION[api], FULL);
        assert.equal(await value(t.registry, "genai_finish_reasons_total", { finish_reason: "stop" }), 1);
        const [span] = t.exporter.getFinishedSpans();
        assert.equal(span.attributes["gen_ai.usage.input_tokens"], FULL.input);
        assert.equal(span.attributes["gen_ai.usage.output_tokens"], FULL.output);
      } finally {
        uninstrumentOpenAI(client);
      }
    });
  }

  for (const api of ["chat", "completions"]) {
    test(`${api}: usage on every chunk, then a drop mid-way: the last counts, once (openai ${version})`, async () => {
      const t = freshTelemetry();
      const client = new sdk({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
      instrumentOpenAI(client);
      try {
        const seen = await readUntilError(client, api, "drop_mid_stream_usage");
        assert.equal(seen.length, 3);
        await assertCounted(t.registry, OPERATION[api], SO_FAR);
      } finally {
        uninstrumentOpenAI(client);
      }
    });
  }
}

test("a stream left with `break` after its usage chunk: counted, not wasted", async () => {
  const t = freshTelemetry();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  instrumentOpenAI(client);
  try {
    const stream = await client.chat.completions.create({
      model: "gpt-4o-mini@ok", messages, stream: true, stream_options: { include_usage: true },
    });
    for await (const chunk of stream) {
      if (chunk.usage) break;
    }
    for (const [tokenType, count] of Object.entries(FULL)) {
      assert.equal(await value(t.registry, "genai_tokens_total", { token_type: tokenType }), count);
    }
    assert.equal(await value(t.registry, "genai_wasted_tokens_total"), 0);
    assert.equal(await value(t.registry, "genai_requests_total", { failure_class: "none" }), 1);
  } finally {
    uninstrumentOpenAI(client);
  }
});

test("a Responses stream that ends `response.failed` with usage: counted and wasted", async () => {
  const t = freshTelemetry();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  instrumentOpenAI(client);
  try {
    const events = [];
    for await (const event of await create(client, "responses", "response_failed")) events.push(event);
    assert.equal(events.at(-1).type, "response.failed");
    const labels = { failure_class: "hard", reason: "server_error" };
    for (const [tokenType, count] of Object.entries(FULL)) {
      assert.equal(await value(t.registry, "genai_tokens_total", { token_type: tokenType }), count);
      assert.equal(await value(t.registry, "genai_wasted_tokens_total", { token_type: tokenType, ...labels }), count);
    }
    assert.equal(await value(t.registry, "genai_failures_total", labels), 1);
  } finally {
    uninstrumentOpenAI(client);
  }
});

test("a stream dropped unclosed after its usage chunk: counted when collected, not wasted", { skip: typeof globalThis.gc !== "function" && "needs --expose-gc" }, async () => {
  const t = freshTelemetry();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
  instrumentOpenAI(client);
  try {
    await (async () => {
      const stream = await client.chat.completions.create({
        model: "gpt-4o-mini@ok", messages, stream: true, stream_options: { include_usage: true },
      });
      const it = stream[Symbol.asyncIterator]();
      for (let r = await it.next(); !r.done && !r.value.usage; r = await it.next());
    })(); // read up to the usage chunk, then dropped without return()
    for (let i = 0; i < 50 && (await value(t.registry, "genai_in_flight_requests")) !== 0; i++) {
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await value(t.registry, "genai_in_flight_requests"), 0);
    for (const [tokenType, count] of Object.entries(FULL)) {
      assert.equal(await value(t.registry, "genai_tokens_total", { token_type: tokenType }), count);
    }
    assert.equal(await value(t.registry, "genai_wasted_tokens_total"), 0);
  } finally {
    uninstrumentOpenAI(client);
  }
});
