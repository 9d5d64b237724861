// The conformance cases' call shapes, shared by the conformance test and the parity workload
// (as `perform` and `run_case` in tests/test_conformance.py).
import { randomUUID } from "node:crypto";
import OpenAI from "openai";
import { makeParseableResponseFormat } from "openai/lib/parser";
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

// The one tool and output schema of the declared-output shapes (as in tests/test_conformance.py).
const TOOL_NAME = "get_weather";
const WEATHER_SCHEMA = {
  type: "object",
  properties: { city: { type: "string" } },
  required: ["city"],
  additionalProperties: false,
};
export const DECLARED_SHAPES = new Set([
  "chat_tools", "chat_tools_stream", "responses_tools", "responses_tools_stream",
  "chat_json_schema", "chat_json_schema_stream", "chat_json_object", "responses_json_schema",
  "responses_json_schema_stream", "chat_parse",
]);

/** `chat_parse`'s format: WEATHER_SCHEMA, parsed and validated as a typed parser (Zod, pydantic) would. */
const WEATHER_FORMAT = makeParseableResponseFormat(
  { type: "json_schema", json_schema: { name: "Weather", schema: WEATHER_SCHEMA, strict: true } },
  (content) => {
    const value = JSON.parse(content);
    const keys = value && typeof value === "object" ? Object.keys(value) : [];
    if (typeof value?.city !== "string" || keys.length !== 1) throw new TypeError(`not a Weather: ${content}`);
    return value;
  },
);

/** What `chat_then_raise` throws: an Error, or a subclass of a class named `name` (an agent framework's). */
function raisedError(name) {
  if (!name) return new Error("the application failed after the call");
  const Named = { [name]: class extends Error {} }[name];
  class AppError extends Named {}
  return new AppError("the application failed after the call");
}

/** The `tools` and `tool_choice` a declared-output shape sends, in the API's own format. */
function declared(call, responses) {
  const strict = call.strict ?? false; // always sent: the Responses API's default is strict
  const tool = responses
    ? { type: "function", name: TOOL_NAME, parameters: WEATHER_SCHEMA, strict }
    : { type: "function", function: { name: TOOL_NAME, parameters: WEATHER_SCHEMA, ...(strict ? { strict: true } : {}) } };
  const found = { tools: [tool] };
  const choice = call.tool_choice;
  if (["auto", "required", "none"].includes(choice)) found.tool_choice = choice;
  else if (choice != null) {
    found.tool_choice = responses ? { type: "function", name: choice } : { type: "function", function: { name: choice } };
  }
  return found;
}

/** The declared-output shapes (as `perform_declared` in tests/test_conformance.py). */
async function performDeclared(client, call, options) {
  const { shape, model } = call;
  const messages = [{ role: "user", content: "weather in Paris?" }];
  const stream = shape.endsWith("_stream");
  const jsonSchema = { name: "weather", schema: WEATHER_SCHEMA, strict: call.strict ?? true };
  if (shape === "chat_parse") {
    const parsed = await client.chat.completions.parse({ model, messages, response_format: WEATHER_FORMAT }, options);
    return parsed.choices[0].message.parsed;
  }
  if (shape.startsWith("chat_")) {
    const params = { model, messages, ...(shape.includes("_tools") ? declared(call, false) : {}) };
    if (shape.startsWith("chat_json_schema")) params.response_format = { type: "json_schema", json_schema: jsonSchema };
    else if (shape === "chat_json_object") params.response_format = { type: "json_object" };
    if (!stream) {
      const message = (await client.chat.completions.create(params, options)).choices[0].message;
      const calls = (message.tool_calls ?? []).map((c) => [c.function.name, c.function.arguments]);
      return calls.length ? calls : message.content;
    }
    const chunks = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } }, options);
    let text = "";
    let args = "";
    for await (const chunk of chunks) {
      for (const choice of chunk.choices) {
        text += choice.delta?.content ?? "";
        for (const delta of choice.delta?.tool_calls ?? []) args += delta.function?.arguments ?? "";
      }
    }
    return args || text;
  }
  const params = { model, input: "weather?", ...(shape.includes("_tools") ? declared(call, true) : {}) };
  if (shape.startsWith("responses_json_schema")) params.text = { format: { type: "json_schema", ...jsonSchema } };
  if (!stream) {
    const answer = await client.responses.create(params, options);
    return answer.output.filter((item) => item.type === "function_call").map((item) => [item.name, item.arguments]);
  }
  const events = [];
  for await (const event of await client.responses.create({ ...params, stream: true }, options)) events.push(event.type);
  return events;
}

/** One call of the case's shape (as `perform` in tests/test_conformance.py). */
export async function perform(client, call, headers) {
  const { shape, model } = call;
  const options = { headers };
  const messages = [{ role: "user", content: "hi" }];
  if (DECLARED_SHAPES.has(shape)) return performDeclared(client, call, options);
  switch (shape) {
    case "chat":
      return (await client.chat.completions.create({ model, messages }, options)).choices[0].message.content;
    case "chat_then_raise": // the application (or an agent framework) fails after a good answer
      await client.chat.completions.create({ model, messages }, options);
      throw raisedError(call.exception?.node);
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

