// What failsight writes from a response into span attributes: the response's model and id,
// streamed or not, with a client key a server echoed there masked (the fault server's
// `key_echo` puts the caller's key in both), and model names never mistaken for keys (as the
// Python package's tests/test_response_attributes.py).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { SpanKind } from "@opentelemetry/api";
import OpenAI from "openai";
import { instrumentOpenAI, uninstrumentOpenAI } from "../dist/index.js";
import { forgetSecrets } from "../dist/redact.js";
import { freshTelemetry, startFaultServer } from "./helpers.mjs";

const KEY = "sk-live-echoed-0123456789abcdefXYZ";
const messages = [{ role: "user", content: "hi" }];
const PREFIX = { chat: "chatcmpl-", completions: "cmpl-", responses: "resp_" };

let server;
before(async () => {
  server = await startFaultServer({});
});
after(async () => {
  await server?.stop();
});

async function call(client, api, model, stream) {
  let result;
  if (api === "chat") result = await client.chat.completions.create({ model, messages, stream });
  else if (api === "completions") result = await client.completions.create({ model, prompt: "hi", stream });
  else result = await client.responses.create({ model, input: "hi", stream });
  if (stream) for await (const _item of result);
}

/** The one CLIENT span of the test, after a call with `apiKey`. */
async function clientSpan(apiKey, api, model, stream) {
  const t = freshTelemetry();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey, maxRetries: 0 });
  instrumentOpenAI(client);
  try {
    await call(client, api, model, stream);
  } finally {
    uninstrumentOpenAI(client);
  }
  const spans = t.exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.CLIENT);
  assert.equal(spans.length, 1);
  return spans[0];
}

/** Every string failsight put on the span: attribute values, event attribute values. */
function strings(span) {
  const found = Object.values(span.attributes).filter((v) => typeof v === "string");
  for (const event of span.events) found.push(...Object.values(event.attributes ?? {}).filter((v) => typeof v === "string"));
  return found;
}


for (const [api, stream] of [["chat", false], ["completions", false], ["responses", false], ["responses", true]]) {
  test(`a key echoed in the model and id of a ${stream ? "streamed " : ""}${api} answer is masked on the span`, async () => {
    try {
      const span = await clientSpan(KEY, api, "gpt-4o-mini@key_echo", stream);
      assert.equal(span.attributes["gen_ai.response.model"], "***");
      assert.equal(span.attributes["gen_ai.response.id"], `${PREFIX[api]}***`);
      assert.deepEqual(strings(span).filter((text) => text.includes(KEY) || text.includes(KEY.slice(8))), []);
    } finally {
      forgetSecrets(KEY);
    }
  });
}

for (const [api, stream] of [["chat", false], ["completions", false], ["responses", false], ["responses", true]]) {
  test(`model names are kept as the server sent them (${api}${stream ? ", streamed" : ""}): no pattern is applied`, async () => {
    const model = "my-task-classifier-v2-2024-05-13";
    const span = await clientSpan("sk-test-0123", api, model, stream);
    assert.equal(span.attributes["gen_ai.response.model"], model);
    assert.ok(String(span.attributes["gen_ai.response.id"]).startsWith(api === "responses" ? "resp_" : "c"));
  });
}

// Chat and completion streams: read once, from the first chunk with choices.
for (const api of ["chat", "completions"]) {
  test(`a streamed ${api} answer records its response id and model, a key echoed there masked`, async () => {
    try {
      const span = await clientSpan(KEY, api, "gpt-4o-mini@key_echo", true);
      assert.equal(span.attributes["gen_ai.response.model"], "***");
      assert.equal(span.attributes["gen_ai.response.id"], `${PREFIX[api]}***`);
      assert.deepEqual(strings(span).filter((text) => text.includes(KEY) || text.includes(KEY.slice(8))), []);
    } finally {
      forgetSecrets(KEY);
    }
  });

  test(`a streamed ${api} answer's model name is kept as the server sent it`, async () => {
    const model = "my-task-classifier-v2-2024-05-13";
    const span = await clientSpan("sk-test-0123", api, model, true);
    assert.equal(span.attributes["gen_ai.response.model"], model);
    assert.ok(String(span.attributes["gen_ai.response.id"]).startsWith(PREFIX[api]));
  });
}
