// The conformance cases' call shapes, shared by the conformance test and the parity workload
// (as `perform` and `run_case` in tests/test_conformance.py).
import { randomUUID } from "node:crypto";
import OpenAI from "openai";
import { currentGeneration, instrumentOpenAI, jsonOutput, minWords, nonEmpty, oneOf, RetryPolicy, tracedGeneration } from "../dist/index.js";

export function makeValidators(specs = []) {
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
    case "chat_then_raise": // the application fails after a good answer
      await client.chat.completions.create({ model, messages }, options);
      throw new Error("the application failed after the call");
    case "chat_until_done": // the usual loop: ask again after a cut-off answer
      for (let i = 0; i < call.max_calls; i++) {
        const answer = await client.chat.completions.create({ model, messages }, options);
        if (answer.choices[0].finish_reason !== "length") return answer.choices[0].message.content;
      }
      return null;
    case "chat_retry_recorded": // code that retries a filtered answer and says so
      for (let i = 0; i < call.max_calls; i++) {
        const answer = await client.chat.completions.create({ model, messages }, options);
        if (answer.choices[0].finish_reason !== "content_filter") return answer.choices[0].message.content;
        currentGeneration()?.recordRetry("content_filter");
      }
      return null;
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

/**
 * Run one case. `sdk`: the client class (default: the `openai` the package resolves); with
 * `perClient`, the client is instrumented on its own (`instrumentOpenAI(client)`), as a client
 * of another copy of the SDK (the major before) must be.
 */
export async function runCase(c, baseURL, { sdk = OpenAI, perClient = false } = {}) {
  const call = c.call;
  const client = new sdk({ baseURL, apiKey: "sk-test", maxRetries: call.max_retries ?? 0, timeout: (call.timeout ?? 10) * 1000 });
  if (perClient) instrumentOpenAI(client);
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

