// Wasted tokens: a retry wastes what its own scope (and the scopes nested in it) reported since
// the scope began or its previous retry, never what an enclosing scope kept (README "Wasted
// tokens and spend"). Over a socket, against the Python fault server, whose answers report
// 11 input (3 cached) and 9 output (4 reasoning) tokens.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { instrumentOpenAI, RetryPolicy, tracedGeneration, uninstrumentOpenAI } from "../dist/index.js";
import { freshTelemetry, parseExposition, startFaultServer, value } from "./helpers.mjs";

const messages = [{ role: "user", content: "hi" }];
const USAGE = { input: 11, output: 9, reasoning: 4, cached_input: 3 };
const noSleep = () => new RetryPolicy({ maxAttempts: 2, sleep: async () => {} });

let server;
before(async () => {
  server = await startFaultServer({});
});
after(async () => {
  await server?.stop();
});

/** Non-zero genai_wasted_tokens_total series as { "token_type|failure_class|reason": n }. */
async function wasted(registry) {
  const found = {};
  for (const s of parseExposition(await registry.metrics())) {
    if (s.name !== "genai_wasted_tokens_total" || !s.value) continue;
    const key = `${s.labels.token_type}|${s.labels.failure_class}|${s.labels.reason}`;
    found[key] = (found[key] ?? 0) + s.value;
  }
  return found;
}

function withClient(body) {
  return async () => {
    const t = freshTelemetry();
    const client = new OpenAI({ baseURL: server.baseURL, apiKey: "sk-test", maxRetries: 0 });
    instrumentOpenAI(client);
    try {
      await body(t, client, { headers: { "X-Failsight-Key": randomUUID() } });
    } finally {
      uninstrumentOpenAI(client);
    }
  };
}

test(
  "an inner scope's policy retry wastes nothing of what the outer scope kept",
  withClient(async (t, client, keyed) => {
    const inner = tracedGeneration({ name: "inner", retry: noSleep() }, () =>
      client.chat.completions.create({ model: "gpt-4o-mini@http_429,ok", messages }, keyed),
    );
    const outer = tracedGeneration({ name: "outer" }, async () => {
      await client.chat.completions.create({ model: "gpt-4o-mini@ok", messages });
      return inner();
    });
    await outer();
    assert.equal(await value(t.registry, "genai_requests_total", { failure_class: "none" }), 1);
    assert.equal(await value(t.registry, "genai_retries_total", { reason: "rate_limited" }), 1);
    assert.equal(await value(t.registry, "genai_tokens_total", { token_type: "input" }), 2 * USAGE.input);
    assert.deepEqual(await wasted(t.registry), {});
  }),
);

test(
  "an inner scope's policy retry wastes its own attempt's usage only",
  withClient(async (t, client, keyed) => {
    const inner = tracedGeneration({ name: "inner", retry: noSleep() }, async () => {
      await client.chat.completions.create({ model: "gpt-4o-mini@ok", messages });
      return client.chat.completions.create({ model: "gpt-4o-mini@http_503,ok", messages }, keyed);
    });
    const outer = tracedGeneration({ name: "outer" }, async () => {
      await client.chat.completions.create({ model: "gpt-4o-mini@ok", messages });
      return inner();
    });
    await outer();
    assert.equal(await value(t.registry, "genai_requests_total", { failure_class: "none" }), 1);
    assert.equal(await value(t.registry, "genai_tokens_total", { token_type: "input" }), 4 * USAGE.input);
    const expected = {};
    for (const [tokenType, n] of Object.entries(USAGE)) expected[`${tokenType}|hard|unavailable`] = n;
    assert.deepEqual(await wasted(t.registry), expected);
  }),
);

test(
  "a retry recorded in a nested scope keeps the outer scope's share, and the outer's own retry takes it",
  withClient(async (t) => {
    const { currentGeneration } = await import("../dist/index.js");
    const inner = tracedGeneration({ name: "inner" }, () => {
      const handle = currentGeneration();
      handle.recordUsage({ input: 4 });
      handle.recordRetry("length");
      handle.recordUsage({ input: 6 });
    });
    const outer = tracedGeneration({ name: "outer" }, async () => {
      currentGeneration().recordUsage({ input: 5 });
      await inner();
      currentGeneration().recordRetry("content_filter");
    });
    await outer();
    assert.deepEqual(await wasted(t.registry), { "input|soft|length": 4, "input|soft|content_filter": 11 });
  }),
);

// ---------------------------------------------------------------------- a recorded retry is the retry

function failures(registry) {
  return value(registry, "genai_failures_total");
}

async function retriesByReason(registry) {
  const found = {};
  for (const s of parseExposition(await registry.metrics())) {
    if (s.name === "genai_retries_total" && s.value) found[s.labels.reason] = (found[s.labels.reason] ?? 0) + s.value;
  }
  return found;
}

const allOf = (failureClass, reason, n = 1) =>
  Object.fromEntries(Object.entries(USAGE).map(([tokenType, count]) => [`${tokenType}|${failureClass}|${reason}`, n * count]));

test(
  "a recorded retry is the retry of the failed call before it: the next call is not a second one",
  withClient(async (t, client) => {
    const { currentGeneration } = await import("../dist/index.js");
    const site = tracedGeneration({ name: "site" }, async () => {
      const filtered = await client.chat.completions.create({ model: "gpt-4o-mini@content_filter", messages });
      assert.equal(filtered.choices[0].finish_reason, "content_filter");
      currentGeneration().recordRetry("content_filter");
      return (await client.chat.completions.create({ model: "gpt-4o-mini@ok", messages })).choices[0].message.content;
    });
    await site();
    assert.deepEqual(await retriesByReason(t.registry), { content_filter: 1 });
    assert.equal(await value(t.registry, "genai_request_attempts_sum"), 2);
    assert.equal(await value(t.registry, "genai_requests_total", { failure_class: "none" }), 1);
    assert.equal(await value(t.registry, "genai_tokens_total", { token_type: "input" }), 2 * USAGE.input);
    assert.deepEqual(await wasted(t.registry), allOf("soft", "content_filter"));
  }),
);

test(
  "two recorded retries in a row after one failure: two retries, the failed call wasted once",
  withClient(async (t, client) => {
    const { currentGeneration } = await import("../dist/index.js");
    const site = tracedGeneration({ name: "site" }, async () => {
      await client.chat.completions.create({ model: "gpt-4o-mini@content_filter", messages });
      currentGeneration().recordRetry("content_filter");
      currentGeneration().recordRetry("rate_limited"); // nothing reported since the previous retry
      await client.chat.completions.create({ model: "gpt-4o-mini@ok", messages });
    });
    await site();
    assert.deepEqual(await retriesByReason(t.registry), { content_filter: 1, rate_limited: 1 });
    assert.equal(await value(t.registry, "genai_request_attempts_sum"), 3);
    assert.deepEqual(await wasted(t.registry), allOf("soft", "content_filter"));
  }),
);

// ---------------------------------------------------------------------- a retry begins a new attempt

test(
  "a retry recorded after a recorded failure: the later attempt names the request (the raw-HTTP loop)",
  withClient(async (t) => {
    const { currentGeneration } = await import("../dist/index.js");
    const raw = tracedGeneration({ name: "raw" }, () => {
      for (const [tokens, finishReason] of [[10, "content_filter"], [3, "stop"]]) {
        currentGeneration().recordUsage({ input: tokens });
        currentGeneration().recordFinishReason(finishReason);
        if (finishReason === "content_filter") currentGeneration().recordRetry("content_filter");
      }
    });
    await raw();
    assert.equal(await value(t.registry, "genai_requests_total", { failure_class: "none" }), 1);
    assert.equal(await failures(t.registry), 0);
    assert.deepEqual(await wasted(t.registry), { "input|soft|content_filter": 10 });
  }),
);

test(
  "an inner scope that ended failed, retried by hand: the request succeeds",
  withClient(async (t, client, keyed) => {
    const { currentGeneration } = await import("../dist/index.js");
    const inner = tracedGeneration({ name: "inner" }, async () => {
      const answer = await client.chat.completions.create({ model: "gpt-4o-mini@content_filter,ok", messages }, keyed);
      return answer.choices[0].finish_reason === "content_filter" ? null : answer.choices[0].message.content;
    });
    const outer = tracedGeneration({ name: "outer" }, async () => {
      if ((await inner()) !== null) return "first";
      currentGeneration().recordRetry("content_filter");
      return inner();
    });
    assert.notEqual(await outer(), null);
    assert.equal(await value(t.registry, "genai_requests_total", { failure_class: "none" }), 1);
    assert.equal(await failures(t.registry), 0);
    assert.deepEqual(await wasted(t.registry), allOf("soft", "content_filter"));
  }),
);

test(
  "a retry recorded and never made leaves the failure it was recorded for",
  withClient(async (t, client) => {
    const { currentGeneration } = await import("../dist/index.js");
    const giveUp = tracedGeneration({ name: "give_up" }, async () => {
      await client.chat.completions.create({ model: "gpt-4o-mini@content_filter", messages });
      currentGeneration().recordRetry("content_filter");
      throw new Error("still filtered");
    });
    await assert.rejects(giveUp(), /still filtered/);
    assert.equal(await value(t.registry, "genai_failures_total", { failure_class: "soft", reason: "content_filter" }), 1);
    assert.equal(await failures(t.registry), 1);
    assert.deepEqual(await wasted(t.registry), allOf("soft", "content_filter"));
    const span = t.exporter.getFinishedSpans().find((s) => s.name === "give_up");
    assert.equal(span.attributes["failsight.failure_reason"], "content_filter");
  }),
);

test(
  "a retry followed by a call, then given up: the failure is forgotten, the exception names the request",
  withClient(async (t, client) => {
    const { currentGeneration } = await import("../dist/index.js");
    const giveUp = tracedGeneration({ name: "give_up" }, async () => {
      await client.chat.completions.create({ model: "gpt-4o-mini@content_filter", messages });
      currentGeneration().recordRetry("content_filter");
      await client.chat.completions.create({ model: "gpt-4o-mini@ok", messages });
      throw new Error("changed my mind");
    });
    await assert.rejects(giveUp(), /changed my mind/);
    assert.equal(await value(t.registry, "genai_failures_total", { failure_class: "hard", reason: "exception" }), 1);
    assert.equal(await failures(t.registry), 1);
  }),
);

test(
  "a policy re-run that returns is a success: the failed attempt's recorded failures are forgotten",
  withClient(async (t, client) => {
    const { currentGeneration } = await import("../dist/index.js");
    let attempts = 0;
    const cached = tracedGeneration({ name: "cached", retry: noSleep() }, async () => {
      attempts += 1;
      if (attempts === 1) {
        currentGeneration().recordUsage({ input: 7 });
        currentGeneration().recordFinishReason("length");
        await client.chat.completions.create({ model: "gpt-4o-mini@http_503", messages });
      }
      return "from the cache"; // nothing called, nothing failed
    });
    assert.equal(await cached(), "from the cache");
    assert.equal(await value(t.registry, "genai_requests_total", { failure_class: "none" }), 1);
    assert.equal(await failures(t.registry), 0);
    assert.deepEqual(await retriesByReason(t.registry), { unavailable: 1 });
    assert.deepEqual(await wasted(t.registry), { "input|hard|unavailable": 7 });
  }),
);
