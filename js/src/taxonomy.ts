// The failure taxonomy's vocabulary: classes, reasons, statuses, finish-reason and video-status
// normalisation, Outcome and Usage. Tables and small pure helpers shared by the classifier, the
// filters and the stream judge; no I/O, no telemetry, and nothing imported from the rest of failsight.

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
export const TIMEOUT_NAMES: ReadonlySet<string> = new Set([
  "APIConnectionTimeoutError", "TimeoutError", "ConnectTimeoutError", "HeadersTimeoutError", "BodyTimeoutError",
]);
export const CONNECTION_NAMES: ReadonlySet<string> = new Set([
  "APIConnectionError", "SocketError", "ConnectionError", "FetchError",
]);
export const CONNECTION_CODES: ReadonlySet<string> = new Set([
  "ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "UND_ERR_SOCKET",
  "UND_ERR_CLOSED", "ERR_STREAM_PREMATURE_CLOSE",
]);
export const INVALID_RESPONSE_NAMES: ReadonlySet<string> = new Set(["SyntaxError", "APIResponseValidationError"]);
export const SOFT_ERRORS: Readonly<Record<string, string>> = {
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

export const MAX_TEXT = 256;

/** [category, stage, severity] of a content filter a provider reported (filters.ts reads them). */
export type Filter = [category: string, stage: string, severity: string];

/** Gemini's filter finish reasons (any case) and their categories. */
export const GEMINI_FILTER_REASONS: Record<string, string> = {
  safety: "safety",
  recitation: "recitation",
  prohibited_content: "prohibited_content",
  blocklist: "custom_blocklist",
  spii: "spii",
  image_safety: "safety",
};

/** How the classifier reads an answer: the `kind` of an operation (operations.ts). */
export type ResultKind = "chat" | "text_completion" | "responses" | "embeddings" | "image" | "video";

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

export type Obj = Record<string, unknown>;

/** obj[key] of anything, undefined for non-objects or when reading it throws. */
export function field(obj: unknown, key: string): unknown {
  if (obj === null || obj === undefined || (typeof obj !== "object" && typeof obj !== "function")) return undefined;
  try {
    return (obj as Obj)[key];
  } catch {
    return undefined;
  }
}

export function asStr(value: unknown): string | undefined {
  if (typeof value === "string") return value.slice(0, MAX_TEXT);
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return undefined;
}

export function asInt(value: unknown): number | undefined {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return undefined;
  return Math.trunc(value);
}

export function asList(value: unknown): unknown[] | undefined {
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
