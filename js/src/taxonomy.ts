// The failure taxonomy as pure functions: errors and API responses in, an Outcome out.
// The same vocabulary and rules as the Python package's classifier; nothing here does I/O
// or touches telemetry, and a malformed input yields a best-effort Outcome, never a throw.
import { filtersOfChoice, filtersOfError, filtersOfPrompt, filtersOfResponse, GEMINI_FILTER_REASONS, type Filter } from "./filters.js";

export type FailureClass = "none" | "hard" | "soft" | "silent";

export const FAILURE_CLASSES: readonly FailureClass[] = ["none", "hard", "soft", "silent"];
export const TOKEN_TYPES = ["input", "output", "reasoning", "cached_input"] as const;
export type TokenType = (typeof TOKEN_TYPES)[number];

const FINISH_REASONS = new Set(["stop", "length", "content_filter", "tool_calls", "function_call", "other"]);

const STATUS_REASONS: Readonly<Record<number, string>> = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  409: "conflict",
  422: "unprocessable",
  429: "rate_limited",
  500: "server_error",
  502: "bad_gateway",
  503: "unavailable",
  504: "gateway_timeout",
};

export const RETRYABLE_REASONS: ReadonlySet<string> = new Set([
  "rate_limited", "server_error", "bad_gateway", "unavailable", "gateway_timeout", "timeout", "connection",
]);

/** A call after one of these is a new attempt, not a retry: the retry policy never retries them. */
export const NON_RETRYABLE_CLIENT_ERRORS: ReadonlySet<string> = new Set([
  "bad_request", "unauthorized", "forbidden", "not_found", "conflict", "unprocessable",
]);

// Error class names (anywhere in the prototype chain) recognised without importing their
// libraries: the openai SDK's, undici's and Node's own. Timeouts are checked first.
const TIMEOUT_NAMES = new Set([
  "APIConnectionTimeoutError", "TimeoutError", "ConnectTimeoutError", "HeadersTimeoutError", "BodyTimeoutError",
]);
const CONNECTION_NAMES = new Set(["APIConnectionError", "SocketError", "ConnectionError", "FetchError"]);
const CONNECTION_CODES = new Set([
  "ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "UND_ERR_SOCKET",
  "UND_ERR_CLOSED", "ERR_STREAM_PREMATURE_CLOSE",
]);
const INVALID_RESPONSE_NAMES = new Set(["SyntaxError", "APIResponseValidationError"]);
const SOFT_ERRORS: Readonly<Record<string, string>> = {
  LengthFinishReasonError: "length",
  ContentFilterFinishReasonError: "content_filter",
};

const VIDEO_STATUSES: Readonly<Record<string, string>> = {
  completed: "succeeded", succeeded: "succeeded", succeed: "succeeded", success: "succeeded",
  failed: "failed", failure: "failed", error: "failed",
  cancelled: "cancelled", canceled: "cancelled",
  queued: "queued", pending: "queued", submitted: "queued", not_start: "queued",
  in_progress: "in_progress", processing: "in_progress", running: "in_progress",
};
export const VIDEO_FAILURE_REASONS: Readonly<Record<string, string>> = {
  failed: "video_failed",
  cancelled: "video_cancelled",
};

const MAX_TEXT = 256;

/** Token counts reported by one API response; undefined where the response did not say. */
export interface Usage {
  input?: number;
  output?: number;
  reasoning?: number;
  cached_input?: number;
}

/** What one error or response means in the failure taxonomy. */
export interface Outcome {
  failureClass: FailureClass;
  reason?: string;
  finishReasons: string[];
  usage?: Usage;
  statusCode?: number;
  errorType?: string;
  errorParam?: string;
  errorCode?: string;
  requestId?: string;
  responseId?: string;
  responseModel?: string;
  retryAfter?: number;
  videoStatus?: string;
  /** A first-poll `task_not_exist` of some gateways: not a failure. */
  transient?: boolean;
  /** [category, stage, severity] a provider gave for a content filter (filters.ts). */
  filters?: Filter[];
}

export function outcome(failureClass: FailureClass = "none", reason?: string, extra: Partial<Outcome> = {}): Outcome {
  return { failureClass, reason, finishReasons: [], ...extra };
}

export function isRetryable(o: Outcome): boolean {
  return o.failureClass === "hard" && o.reason !== undefined && RETRYABLE_REASONS.has(o.reason);
}

// ------------------------------------------------------------------ accessors

type Obj = Record<string, unknown>;

/** obj[key] of anything, undefined for non-objects or when reading it throws. */
export function field(obj: unknown, key: string): unknown {
  if (obj === null || obj === undefined || (typeof obj !== "object" && typeof obj !== "function")) return undefined;
  try {
    return (obj as Obj)[key];
  } catch {
    return undefined;
  }
}

function asStr(value: unknown): string | undefined {
  if (typeof value === "string") return value.slice(0, MAX_TEXT);
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return undefined;
}

function asInt(value: unknown): number | undefined {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return undefined;
  return Math.trunc(value);
}

function asList(value: unknown): unknown[] | undefined {
  return Array.isArray(value) ? value : undefined;
}

// ------------------------------------------------------------------ vocabulary

/** The reason of an HTTP error status, e.g. 429 -> "rate_limited". */
export function reasonForStatus(status: number): string {
  const known = STATUS_REASONS[status];
  if (known !== undefined) return known;
  if (status >= 400 && status < 500) return "other_4xx";
  if (status >= 500 && status < 600) return "other_5xx";
  return "invalid_response";
}

/** A finish reason in label spelling (`other` for unknown values), undefined when absent. */
export function normalizeFinishReason(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value !== "string") return "other";
  if (FINISH_REASONS.has(value)) return value;
  // Gemini's filter reasons, as gateways pass them through
  return GEMINI_FILTER_REASONS[value.toLowerCase().slice(0, 32)] !== undefined ? "content_filter" : "other";
}

/** Gateway spellings -> `succeeded`/`failed`/`cancelled`/`queued`/`in_progress`. */
export function normalizeVideoStatus(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  const key = value.trim().toLowerCase().slice(0, 32);
  return VIDEO_STATUSES[key] ?? (key.replace(/ /g, "_") || undefined);
}

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
  if ([...names].some((n) => INVALID_RESPONSE_NAMES.has(n))) reason = "invalid_response";
  else if ([...names].some((n) => TIMEOUT_NAMES.has(n))) reason = "timeout";
  else if (status !== undefined && status >= 400) reason = reasonForStatus(status);
  else if (connectionLike(err)) reason = "connection";
  else reason = "exception";
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

// Soft failures of several choices: the most telling one names the request.
const SOFT_PRIORITY = ["content_filter", "refusal", "length", "empty_content"];

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
    if (finishReason === "content_filter" || finishReason === "length") {
      failures.push(finishReason);
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

function nonEmpty(value: unknown): boolean {
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
    const finish = (why === "max_output_tokens" ? "length" : normalizeFinishReason(why)) ?? "other";
    return outcome("soft", finish === "content_filter" ? finish : "length", { ...base, finishReasons: [finish] });
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

export type ResultKind = "chat" | "text_completion" | "responses" | "embeddings" | "image" | "video";

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

// ------------------------------------------------------------------ streams

const FINAL_EVENTS = new Set(["response.completed", "response.incomplete", "response.failed"]);
const MAX_REASONS = 64;

/** Watches the chunks of one stream and gives its outcome at the end. */
export class StreamJudge {
  firstToken: number | undefined;
  readonly finishReasons: string[] = [];
  private sawContent = false;
  private sawTools = false;
  private sawRefusal = false;
  private usage: unknown;
  private final: Outcome | undefined;
  private readonly filters: Filter[] = [];
  private responseId: string | undefined; // "" once read from a chunk without one
  private responseModel: string | undefined;

  constructor(readonly kind: ResultKind) {}

  chunk(item: unknown): void {
    if (this.kind === "responses") {
      this.event(item);
      return;
    }
    const choices = field(item, "choices");
    if (Array.isArray(choices)) {
      if (this.responseId === undefined && choices.length) {
        // read once, from the first chunk with choices (Azure's first has none, nor the answer's id)
        this.responseId = asStr(field(item, "id")) ?? "";
        const model = field(item, "model");
        if (typeof model === "string" && model) this.responseModel = model.slice(0, MAX_TEXT);
      }
      for (const choice of choices) {
        if (!this.sawContent) this.delta(choice);
        const reason = field(choice, "finish_reason");
        if (reason !== null && reason !== undefined && this.finishReasons.length < MAX_REASONS) {
          const normalized = normalizeFinishReason(reason) ?? "other";
          this.finishReasons.push(normalized);
          if (normalized === "content_filter" && this.filters.length < MAX_REASONS) this.filters.push(...filtersOfChoice(choice));
        }
      }
    }
    if (!Array.isArray(choices) || choices.length === 0) {
      // Azure's first chunk: the prompt's filter results, and no choices
      const prompt = field(item, "prompt_filter_results");
      if (prompt !== undefined && this.filters.length < MAX_REASONS) this.filters.push(...filtersOfPrompt(prompt));
    }
    const usage = field(item, "usage");
    if (usage !== null && usage !== undefined) this.usage = usage;
  }

  private first(): void {
    if (this.firstToken === undefined) this.firstToken = performance.now();
  }

  private delta(choice: unknown): void {
    const delta = field(choice, "delta");
    if (delta === null || delta === undefined) {
      if (field(choice, "text")) {
        this.sawContent = true;
        this.first();
      }
      return;
    }
    if (field(delta, "content")) {
      this.sawContent = true;
      this.first();
    }
    if (nonEmpty(field(delta, "tool_calls")) || field(delta, "function_call")) {
      this.sawTools = true;
      this.first();
    }
    if (field(delta, "refusal")) {
      this.sawRefusal = true;
      this.first();
    }
  }

  private event(event: unknown): void {
    const kind = field(event, "type");
    if (typeof kind !== "string") return;
    if (kind.endsWith(".delta")) this.first();
    else if (FINAL_EVENTS.has(kind)) this.final = classifyResult(field(event, "response"), "responses");
  }

  /** The outcome; `exhausted` when iteration ran out (not closed early): no finish reason then means cut off. */
  outcome(exhausted: boolean): Outcome {
    if (this.kind === "responses") {
      if (this.final) return this.final;
      return exhausted ? outcome("hard", "connection") : outcome();
    }
    const reasons = [...this.finishReasons];
    const usage = extractUsage(this.usage);
    const identity = { responseId: this.responseId || undefined, responseModel: this.responseModel };
    if (reasons.length === 0) {
      return exhausted ? outcome("hard", "connection", { usage, ...identity }) : outcome("none", undefined, { usage, ...identity });
    }
    const found: string[] = reasons.filter((r) => r === "content_filter" || r === "length");
    if (this.sawRefusal && !this.sawContent) found.push("refusal");
    if (!(this.sawContent || this.sawTools || this.sawRefusal) && reasons.includes("stop")) found.push("empty_content");
    const failure = worstSoftReason(found);
    return outcome(failure ? "soft" : "none", failure, { finishReasons: reasons, usage, filters: [...this.filters], ...identity });
  }
}
