// Masking (redact.ts) against the vocabulary's `secrets.cases` (src/failsight/vocabulary.json),
// the table tests/test_redact.py runs through the Python package: every pattern, remembered keys
// in their spellings, the cut; then the key a client sends, echoed back by an endpoint, masked on
// the span.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { resolve } from "node:path";
import { afterEach, test } from "node:test";
import OpenAI7, { AzureOpenAI as AzureOpenAI7 } from "openai";
import { VERSION as VERSION7 } from "openai/version";
import OpenAI6, { AzureOpenAI as AzureOpenAI6 } from "openai6";
import { VERSION as VERSION6 } from "openai6/version";
import { instrumentOpenAI, uninstrumentOpenAI } from "../dist/index.js";
import { forgetSecrets, maskRemembered, maskSecrets, rememberSecret } from "../dist/redact.js";
import { freshTelemetry, repoRoot } from "./helpers.mjs";

const table = JSON.parse(readFileSync(resolve(repoRoot, "src", "failsight", "vocabulary.json"), "utf8")).secrets;

afterEach(() => forgetSecrets());

for (const c of table.cases) {
  test(`vocabulary.json secrets.cases: ${c.id}`, () => {
    for (const key of c.remember ?? []) rememberSecret(key);
    assert.equal(maskSecrets(c.text, c.limit ?? 1024), c.masked);
  });
}

test("a text without anything to mask comes back as it is", () => {
  const text = "The server had an error while processing your request. Sorry about that!";
  assert.equal(maskSecrets(text), text);
});

test("remembered keys are bounded: the oldest dropped, one seen again kept", () => {
  const keys = Array.from({ length: 74 }, (_, i) => `tenant-key-${String(i).padStart(4, "0")}`);
  for (const key of keys) rememberSecret(key);
  assert.equal(maskSecrets(keys[0]), keys[0]); // dropped
  assert.equal(maskSecrets(keys.at(-1)), "***");
  const hot = keys[40];
  rememberSecret(hot);
  for (let i = 0; i < 63; i++) rememberSecret(`later-key-${String(i).padStart(4, "0")}`);
  assert.equal(maskSecrets(hot), "***");
  forgetSecrets(hot);
  assert.equal(maskSecrets(hot), hot);
});

test("a remembered key is never left whole or as a prefix by the cut", () => {
  const key = `opaque${"Q".repeat(600)}`;
  rememberSecret(key);
  for (const start of [0, 50, 95, 99, 100, 101, 150]) {
    const masked = maskSecrets(`${"x".repeat(start)}${key} tail`, 100);
    assert.ok(!masked.includes("QQQQ") && !masked.includes("opaq"), `${start}: ${masked}`);
    assert.ok(masked.length <= 101);
  }
});

// ------------------------------------------------------------------ the client's own key, end to end

/** A loopback endpoint that answers 401 and echoes the key it was sent, as some gateways do. */
async function echoingEndpoint() {
  const server = createServer((req, res) => {
    const sent = req.headers["api-key"] ?? (req.headers.authorization ?? "").replace(/^Bearer /, "");
    const error = { message: `Invalid credentials ${sent} for this deployment`, type: "auth", param: `key=${sent}`, code: sent };
    req.resume();
    res.writeHead(401, { "content-type": "application/json", "x-request-id": `req ${sent}` }).end(JSON.stringify({ error }));
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((done) => server.close(done)) };
}

// Keys with no shape any pattern knows: only remembering the exact key sent masks them.
for (const [OpenAI, AzureOpenAI, version] of [[OpenAI7, AzureOpenAI7, VERSION7], [OpenAI6, AzureOpenAI6, VERSION6]]) {
  for (const [kind, key, makeClient] of [
    ["an OpenAI client's key", "plainKeyNoShape-123456", (url, k) => new OpenAI({ baseURL: `${url}/v1`, apiKey: k, maxRetries: 0 })],
    ["a key a function hands the client", "rotatedKeyNoShape-7890", (url, k) => new OpenAI({ baseURL: `${url}/v1`, apiKey: async () => k, maxRetries: 0 })],
    [
      "an Azure client's api-key header",
      "azureKeyNoShape-24680",
      (url, k) => new AzureOpenAI({ endpoint: url, apiKey: k, apiVersion: "2024-10-21", deployment: "gpt-4o-mini", maxRetries: 0 }),
    ],
  ]) {
    test(`${kind} echoed in an error is masked on the span (openai ${version})`, async () => {
      const endpoint = await echoingEndpoint();
      const t = freshTelemetry();
      const client = makeClient(endpoint.url, key);
      instrumentOpenAI(client);
      try {
        await assert.rejects(client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }));
        const [span] = t.exporter.getFinishedSpans();
        const recorded = JSON.stringify([span.attributes, span.events.map((e) => e.attributes), span.status]);
        assert.ok(recorded.includes("Invalid credentials *** for this deployment"), recorded);
        assert.equal(span.attributes["failsight.error.param"], "key=***");
        assert.ok(!recorded.includes(key) && !recorded.includes(key.slice(0, 12)), recorded);
      } finally {
        uninstrumentOpenAI(client);
        await endpoint.close();
      }
    });
  }
}

test("maskRemembered masks remembered keys only: a value shaped like a key is left as sent", () => {
  rememberSecret("a1b2c3d4e5f6");
  try {
    assert.equal(maskRemembered("chatcmpl-a1b2c3d4e5f6"), "chatcmpl-***");
    assert.equal(maskRemembered("my-task-classifier-v2-0513"), "my-task-classifier-v2-0513");
    const shaped = "sk-proj-0123456789abcdefghijklmnopqrstuv"; // a pattern would take it: maskSecrets does
    assert.equal(maskRemembered(shaped), shaped);
    assert.notEqual(maskSecrets(shaped), shaped);
  } finally {
    forgetSecrets("a1b2c3d4e5f6");
  }
});
