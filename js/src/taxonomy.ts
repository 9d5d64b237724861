// The failure taxonomy's vocabulary: classes, reasons, statuses, finish-reason and video-status
// normalisation, Outcome and Usage. Tables and small pure helpers shared by the classifier, the
// filters and the stream judge, read from the vocabulary; no I/O, no telemetry, and nothing else
// imported from the rest of failsight.
import { VOCABULARY } from "./vocabulary.js";

export type FailureClass = "none" | "hard" | "soft" | "silent";

const V = VOCABULARY;
export const FAILURE_CLASSES: readonly FailureClass[] = V.failure_classes;
export const OTHER = V.other;
export const TOKEN_TYPES = V.labels.token_types as readonly TokenType[];
export type TokenType = keyof Usage;

// HTTP error statuses with a reason of their own: [status, reason, whether a retry policy re-attempts it].
const STATUSES: readonly (readonly [number, string, boolean])[] = Object.entries(V.status_reasons).map(
  ([status, entry]) => [Number(status), entry.reason, entry.retryable] as const,
);

/** The closed reason vocabulary by failure class (reasons.hard, .soft, .silent); a status's reason is hard. */
export const HARD_REASONS: ReadonlySet<string> = new Set([...V.reasons.hard, ...STATUSES.map(([, reason]) => reason)]);
export const SOFT_REASONS: ReadonlySet<string> = new Set(V.reasons.soft);
export const SILENT_REASONS: ReadonlySet<string> = new Set(V.reasons.silent);
/** Every reason of the taxonomy, and `other` (what a capped reason becomes): never capped. */
export const REASONS: ReadonlySet<string> = new Set([...HARD_REASONS, ...SOFT_REASONS, ...SILENT_REASONS, OTHER]);

const FINISH = V.finish_reasons;
const FINISH_VALUES: ReadonlySet<string> = new Set(FINISH.values);
// Every provider's spellings in one map (the vocabulary's test holds them to agree).
const FINISH_ALIASES: ReadonlyMap<string, string> = new Map(Object.values(FINISH.aliases).flatMap((a) => Object.entries(a)));

export const RETRYABLE_REASONS: ReadonlySet<string> = new Set([
  ...STATUSES.filter(([, , retry]) => retry).map(([, reason]) => reason),
  ...V.retryable_reasons,
]);

/** A call after one of these is a new attempt, not a retry: the retry policy never retries them. */
export const NON_RETRYABLE_CLIENT_ERRORS: ReadonlySet<string> = new Set(
  STATUSES.filter(([status, , retry]) => status < 500 && !retry).map(([, reason]) => reason),
);

/** Soft reasons, the most telling first: one names a request whose choices failed several ways. */
export const SOFT_PRIORITY: readonly string[] = V.soft_priority;

// Error class names (anywhere in the prototype chain) recognised without importing their
// libraries: the openai SDK's, undici's and Node's own. Timeouts are checked first.
const EXCEPTIONS = V.exceptions.node;
export const TIMEOUT_NAMES: ReadonlySet<string> = new Set(EXCEPTIONS.timeout);
export const CONNECTION_NAMES: ReadonlySet<string> = new Set(EXCEPTIONS.connection);
export const CONNECTION_CODES: ReadonlySet<string> = new Set(EXCEPTIONS.connection_codes ?? []);
export const INVALID_RESPONSE_NAMES: ReadonlySet<string> = new Set(EXCEPTIONS.invalid_response);
export const SOFT_ERRORS: Readonly<Record<string, string>> = EXCEPTIONS.soft;

const VIDEO_STATUSES = V.video.statuses;
export const VIDEO_FAILURE_REASONS: Readonly<Record<string, string>> = V.video.failure_reasons;

export const MAX_TEXT = 256;

/** [category, stage, severity] of a content filter a provider reported (filters.ts reads them). */
export type Filter = [category: string, stage: string, severity: string];

/** Gemini's filter finish reasons (any case) and their categories. */
export const GEMINI_FILTER_REASONS: Readonly<Record<string, string>> = V.filters.finish_reasons;

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

const STATUS_REASONS: ReadonlyMap<number, string> = new Map(STATUSES.map(([status, reason]) => [status, reason]));
const FALLBACKS = V.status_fallbacks;

/** The reason of an HTTP error status, e.g. 429 -> "rate_limited". */
export function reasonForStatus(status: number): string {
  const known = STATUS_REASONS.get(status);
  if (known !== undefined) return known;
  if (status >= 400 && status < 500) return FALLBACKS["4xx"];
  if (status >= 500 && status < 600) return FALLBACKS["5xx"];
  return FALLBACKS.other;
}

/**
 * A finish reason in label spelling, undefined when absent: a label value as it is, else a
 * provider's spelling (any case, trimmed) mapped onto one, else `other` (anything not a string too).
 *
 * @example normalizeFinishReason("end_turn") // "stop" (Anthropic's); "MAX_TOKENS" -> "length"
 */
export function normalizeFinishReason(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value !== "string") return OTHER;
  if (FINISH_VALUES.has(value)) return value;
  const key = value.trim().toLowerCase().slice(0, 32);
  if (FINISH_VALUES.has(key)) return key;
  return FINISH_ALIASES.get(key) ?? OTHER;
}

/** The soft reason a (normalised) finish reason means, undefined when it is no failure. */
export function failureOfFinishReason(finishReason: string | undefined): string | undefined {
  return finishReason === undefined ? undefined : FINISH.failing[finishReason];
}

/** Gateway spellings -> `succeeded`/`failed`/`cancelled`/`queued`/`in_progress`. */
export function normalizeVideoStatus(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  const key = value.trim().toLowerCase().slice(0, 32);
  return VIDEO_STATUSES[key] ?? (key.replace(/ /g, "_") || undefined);
}
