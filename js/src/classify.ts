// The classifier as pure functions: errors and API responses in, an Outcome out. The same rules
// as the Python package's classifier; nothing here does I/O or touches telemetry, and a malformed
// input yields a best-effort Outcome, never a throw.
import { filtersOfError, filtersOfResponse } from "./filters.js";
import {
  asInt,
  asList,
  asStr,
  CONNECTION_CODES,
  CONNECTION_NAMES,
  failureOfFinishReason,
  field,
  INVALID_RESPONSE_NAMES,
  MAX_TEXT,
  normalizeFinishReason,
  normalizeVideoStatus,
  OTHER,
  outcome,
  reasonForStatus,
  RETRYABLE_REASONS,
  SOFT_ERRORS,
  SOFT_PRIORITY,
  TIMEOUT_NAMES,
  VIDEO_FAILURE_REASONS,
  type Obj,
  type Outcome,
  type ResultKind,
  type Usage,
} from "./taxonomy.js";

// ------------------------------------------------------------------ errors

function chainNames(err: unknown): Set<string> {
  const names = new Set<string>();
  try {
    const own = field(err, "name");
    if (typeof own === "string") names.add(own);
    let proto = err !== null && typeof err === "object" ? Object.getPrototypeOf(err) : null;
    for (let depth = 0; proto && depth < 16; depth++) {
      const ctor = (proto as Obj).constructor as { name?: unknown } | undefined;
      if (ctor && typeof ctor.name === "string") names.add(ctor.name);
      proto = Object.getPrototypeOf(proto);
    }
  } catch {
    // a hostile prototype chain: what was read so far
  }
  return names;
}

function headerOf(headers: unknown, name: string): string | undefined {
  if (!headers) return undefined;
  try {
    const get = field(headers, "get");
    if (typeof get === "function") {
      const v = (get as (n: string) => unknown).call(headers, name);
      return typeof v === "string" ? v : undefined;
    }
    const v = field(headers, name);
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Seconds to wait from `retry-after-ms` or `retry-after` (seconds; HTTP dates ignored). */
export function parseRetryAfter(headers: unknown): number | undefined {
  const ms = headerOf(headers, "retry-after-ms");
  if (ms !== undefined) {
    const n = Number(ms);
    if (ms.trim() !== "" && Number.isFinite(n) && n >= 0) return n / 1000;
  }
  const s = headerOf(headers, "retry-after");
  if (s !== undefined) {
    const n = Number(s);
    if (s.trim() !== "" && Number.isFinite(n) && n >= 0) return n;
  }
  return undefined;
}

function connectionLike(err: unknown, depth = 0): boolean {
  if (depth > 4 || err === null || typeof err !== "object") return false;
  const code = field(err, "code");
  if (typeof code === "string" && CONNECTION_CODES.has(code)) return true;
  const names = chainNames(err);
  for (const name of names) if (CONNECTION_NAMES.has(name)) return true;
  const message = field(err, "message");
  // undici's fetch: "terminated" when the body is cut, "fetch failed" when the socket fails
  if (names.has("TypeError") && (message === "terminated" || message === "fetch failed")) return true;
  return connectionLike(field(err, "cause"), depth + 1);
}

function qualifiedName(err: unknown): string | undefined {
  const names = chainNames(err);
  const ctor = field(err, "constructor") as { name?: unknown } | undefined;
  if (ctor && typeof ctor.name === "string" && ctor.name) return ctor.name;
  const first = names.values().next();
  return first.done ? undefined : first.value;
}

/**
 * Classify an error thrown by an API call (or by code around it).
 *
 * @example classifyError(new OpenAI.RateLimitError(...)).reason // "rate_limited"
 */
export function classifyError(err: unknown): Outcome {
  try {
    return classifyErrorUnsafe(err);
  } catch {
    return outcome("hard", "exception");
  }
}

function classifyErrorUnsafe(err: unknown): Outcome {
  const names = chainNames(err);
  const errorType = qualifiedName(err);
  for (const [name, reason] of Object.entries(SOFT_ERRORS)) {
    if (names.has(name)) return outcome("soft", reason, { finishReasons: [reason], errorType });
  }
  const headers = field(err, "headers");
  const body = field(err, "error");
  const statusRaw = asInt(field(err, "status"));
  const status = statusRaw !== undefined && statusRaw >= 100 && statusRaw <= 599 ? statusRaw : undefined;
  const param = asStr(field(err, "param")) ?? asStr(field(body, "param"));
  const code = asStr(field(err, "code")) ?? asStr(field(body, "code"));
  const requestId = asStr(field(err, "requestID")) ?? headerOf(headers, "x-request-id");
  let reason: string;
  if ([...names].some((n) => INVALID_RESPONSE_NAMES.has(n))) {
    reason = "invalid_response";
  } else if ([...names].some((n) => TIMEOUT_NAMES.has(n))) {
    reason = "timeout";
  } else if (status !== undefined && status >= 300) {
    // an error carrying a 3xx: the SDK got an answer it cannot use (status_fallbacks.other)
    reason = reasonForStatus(status);
  } else if (connectionLike(err)) {
    reason = "connection";
  } else {
    reason = "exception";
  }
  let transient = false;
  if (reason === "not_found") {
    const message = asStr(field(err, "message")) ?? "";
    transient = code === "task_not_exist" || message.includes("task_not_exist");
  }
  return outcome("hard", reason, {
    statusCode: status,
    errorType,
    errorParam: status !== undefined ? param : undefined,
    errorCode: status !== undefined ? code : undefined,
    requestId: status !== undefined ? requestId : undefined,
    retryAfter: RETRYABLE_REASONS.has(reason) ? parseRetryAfter(headers) : undefined,
    transient,
    ...(code === "content_filter" ? { filters: filtersOfError(body) } : {}),
  });
}

/** An HTTP answer seen without an error (one SDK attempt), judged by its status. */
export function classifyStatus(status: number, headers?: unknown): Outcome | undefined {
  if (status < 400) return undefined;
  const reason = reasonForStatus(status);
  return outcome("hard", reason, {
    statusCode: status,
    requestId: headerOf(headers, "x-request-id"),
    retryAfter: RETRYABLE_REASONS.has(reason) ? parseRetryAfter(headers) : undefined,
  });
}

// ------------------------------------------------------------------ responses

export function extractUsage(usage: unknown): Usage | undefined {
  if (usage === null || usage === undefined || typeof usage !== "object") return undefined;
  let input = asInt(field(usage, "prompt_tokens"));
  let output = asInt(field(usage, "completion_tokens"));
  let inputDetails: unknown;
  let outputDetails: unknown;
  if (input === undefined && output === undefined) {
    input = asInt(field(usage, "input_tokens"));
    output = asInt(field(usage, "output_tokens"));
    inputDetails = field(usage, "input_tokens_details");
    outputDetails = field(usage, "output_tokens_details");
  } else {
    inputDetails = field(usage, "prompt_tokens_details");
    outputDetails = field(usage, "completion_tokens_details");
  }
  const reasoning = asInt(field(outputDetails, "reasoning_tokens"));
  const cached = asInt(field(inputDetails, "cached_tokens"));
  if (input === undefined && output === undefined && reasoning === undefined && cached === undefined) return undefined;
  const found: Usage = {};
  if (input !== undefined) found.input = input;
  if (output !== undefined) found.output = output;
  if (reasoning !== undefined) found.reasoning = reasoning;
  if (cached !== undefined) found.cached_input = cached;
  return found;
}

function blank(text: unknown): boolean {
  if (text === null || text === undefined) return true;
  if (typeof text === "string") return text.trim() === "";
  if (Array.isArray(text)) return text.every((part) => blank(field(part, "text")));
  return false;
}

/** Of the soft failures of several choices, the most telling one (it names the request). */
export function worstSoftReason(reasons: string[]): string | undefined {
  for (const reason of SOFT_PRIORITY) if (reasons.includes(reason)) return reason;
  return undefined;
}

function classifyChoices(obj: unknown, choices: unknown[]): Outcome {
  const finish: string[] = [];
  const failures: string[] = [];
  for (const choice of choices) {
    const finishReason = normalizeFinishReason(field(choice, "finish_reason"));
    if (finishReason !== undefined) finish.push(finishReason);
    const message = field(choice, "message");
    if ((message === undefined || message === null) && field(choice, "delta") != null) continue;
    const failing = failureOfFinishReason(finishReason);
    if (failing !== undefined) {
      failures.push(failing);
      continue;
    }
    const stopped = finishReason === "stop" || finishReason === undefined;
    if (message !== undefined && message !== null) {
      if (field(message, "refusal")) failures.push("refusal");
      else if (stopped && blank(field(message, "content")) && !nonEmpty(field(message, "tool_calls")) && !field(message, "function_call")) {
        failures.push("empty_content");
      }
    } else if (stopped && blank(field(choice, "text"))) {
      failures.push("empty_content"); // legacy completion
    }
  }
  const reason = worstSoftReason(failures);
  return outcome(reason ? "soft" : "none", reason, {
    ...(finish.includes("content_filter") ? { filters: filtersOfResponse(obj) } : {}),
    finishReasons: finish,
    usage: extractUsage(field(obj, "usage")),
    responseId: asStr(field(obj, "id")),
    responseModel: asStr(field(obj, "model")),
  });
}

export function nonEmpty(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0;
  return Boolean(value);
}

function classifyResponseApi(obj: unknown): Outcome {
  const status = field(obj, "status");
  const base = {
    usage: extractUsage(field(obj, "usage")),
    responseId: asStr(field(obj, "id")),
    responseModel: asStr(field(obj, "model")),
  };
  if (status === "incomplete") {
    const why = field(field(obj, "incomplete_details"), "reason");
    const finish = normalizeFinishReason(why) ?? OTHER;
    // Incomplete for a reason that is no failure of its own (or none given): cut short all the same.
    return outcome("soft", failureOfFinishReason(finish) ?? "length", { ...base, finishReasons: [finish] });
  }
  if (status === "failed") {
    const code = asStr(field(field(obj, "error"), "code"));
    return outcome("hard", code === "rate_limit_exceeded" ? "rate_limited" : "server_error", { ...base, errorCode: code });
  }
  if (status !== "completed" && status !== undefined && status !== null) return outcome("none", undefined, base);
  let hasText = false;
  let hasOther = false;
  let refused = false;
  for (const item of asList(field(obj, "output")) ?? []) {
    const kind = field(item, "type");
    if (kind === "message") {
      for (const part of asList(field(item, "content")) ?? []) {
        if (field(part, "type") === "refusal") refused = true;
        else if (!blank(field(part, "text"))) hasText = true;
      }
    } else if (kind !== "reasoning") {
      hasOther = true; // tool and function calls: output by design
    }
  }
  const done = status === "completed" ? ["stop"] : [];
  if (refused && !hasText) return outcome("soft", "refusal", { ...base, finishReasons: done });
  if (!(hasText || hasOther)) return outcome("soft", "empty_content", { ...base, finishReasons: done });
  return outcome("none", undefined, { ...base, finishReasons: done });
}

function classifyImages(obj: unknown): Outcome {
  const usage = extractUsage(field(obj, "usage"));
  const usable = (asList(field(obj, "data")) ?? []).some((item) => field(item, "url") || field(item, "b64_json"));
  return usable ? outcome("none", undefined, { usage }) : outcome("soft", "image_filtered", { usage });
}

function classifyVideo(obj: unknown): Outcome {
  const status = normalizeVideoStatus(field(obj, "status"));
  const error = field(obj, "error");
  const reason = status ? VIDEO_FAILURE_REASONS[status] : undefined;
  return outcome(reason ? "soft" : "none", reason, {
    responseId: asStr(field(obj, "id")) ?? asStr(field(obj, "task_id")),
    responseModel: asStr(field(obj, "model")),
    videoStatus: status,
    errorCode: typeof error === "string" ? undefined : asStr(field(error, "code")),
  });
}


/** Classify an API response object (SDK result or plain JSON) of a known kind. */
export function classifyResult(obj: unknown, kind: ResultKind): Outcome {
  try {
    switch (kind) {
      case "chat":
      case "text_completion": {
        const choices = asList(field(obj, "choices"));
        if (choices === undefined) return outcome("hard", "invalid_response");
        if (choices.length === 0) {
          const usage = extractUsage(field(obj, "usage"));
          if (field(obj, "object") === "chat.completion.chunk") return outcome("none", undefined, { usage });
          return outcome("soft", "empty_content", { usage });
        }
        return classifyChoices(obj, choices);
      }
      case "responses":
        return classifyResponseApi(obj);
      case "image":
        return classifyImages(obj);
      case "video":
        return classifyVideo(obj);
      case "embeddings":
        return outcome("none", undefined, {
          usage: extractUsage(field(obj, "usage")),
          responseModel: asStr(field(obj, "model")),
        });
    }
  } catch {
    return outcome("hard", "invalid_response");
  }
  return outcome();
}

const AZURE_SUFFIXES = [".openai.azure.com", ".services.ai.azure.com", ".cognitiveservices.azure.com"];

/** The `provider` label of a base URL's host. */
export function providerForHost(host: string | undefined): string {
  if (!host) return "unknown";
  const h = host.toLowerCase().slice(0, MAX_TEXT);
  if (h === "api.openai.com") return "openai";
  if (AZURE_SUFFIXES.some((suffix) => h.endsWith(suffix))) return "azure.ai.openai";
  return h;
}
