// failsight's vocabulary, read once from `vocabulary.json`: the file the Python package reads
// too (src/failsight/vocabulary.json; the build copies it next to this module). It holds every
// name the two packages share: failure classes and reasons, status and finish-reason spellings,
// video statuses, content-filter categories, guard stages, the metric table, span names, the
// operation table and the secret patterns. The modules that own a concept build their tables from
// it at load; none spells such a table itself (tests/test_vocabulary.py looks for one).
// Imports nothing from failsight: every other module may read it.
import { readFileSync } from "node:fs";

/** A finish-reason mapping: provider spelling (lower case) -> failsight's label value. */
export type Spellings = Readonly<Record<string, string>>;

export interface MetricEntry {
  readonly name: string;
  readonly type: "counter" | "gauge" | "histogram";
  readonly help: string;
  readonly labels: readonly string[];
  readonly common_labels: boolean;
  readonly unit?: "seconds" | "tokens" | "usd";
  readonly buckets?: readonly number[];
  readonly multiprocess_mode?: string;
}

/** Where the openai Node SDK keeps an operation's methods. */
export interface NodeMethods {
  readonly path: readonly string[];
  readonly methods: readonly string[];
  /** Where the request body is among the arguments; -1: none. */
  readonly body_arg: number;
}

export interface OperationEntry {
  readonly operation: string;
  readonly kind: "chat" | "text_completion" | "responses" | "embeddings" | "image" | "video";
  readonly api_type: string;
  readonly role: "call" | "poll";
  readonly routes: readonly (readonly [string, string])[];
  readonly node: readonly NodeMethods[];
}

export interface ExceptionNames {
  readonly timeout: readonly string[];
  readonly connection: readonly string[];
  readonly connection_codes?: readonly string[];
  readonly invalid_response: readonly string[];
  /** Error class name -> soft reason. */
  readonly soft: Spellings;
  /** An agent framework's end-of-run error class name -> its reason. */
  readonly agents: Spellings;
}

/** What a request declares, judged against its answer (tools, tool_choice, structured output). */
export interface DeclaredEntry {
  /** A tool call's failing outcome -> the silent reason of its request. */
  readonly tool_call_reasons: Spellings;
  readonly missing_reason: string;
  readonly output_reasons: { readonly not_json: string; readonly schema_mismatch: string };
  /** The `tool` label of a name the request did not declare. */
  readonly undeclared_tool: string;
  readonly limits: {
    readonly max_tool_calls: number;
    readonly max_parsed_length: number;
    readonly max_validated_length: number;
    readonly max_schema_nodes: number;
    readonly max_schema_depth: number;
    readonly max_unique_items: number;
    readonly schema_cache_size: number;
  };
}

/** One provider's header names of one rate-limit resource. */
export interface HeaderSet {
  readonly limit: string;
  readonly remaining: string;
  readonly reset: string;
}

/** Rate-limit headers and the attempts of a request (the vocabulary's `ratelimit`). */
export interface RateLimitEntry {
  /** Resource -> tiers of header sets, in order of precedence. */
  readonly resources: Readonly<Record<string, readonly (readonly HeaderSet[])[]>>;
  /** Header -> seconds per unit; the first readable one wins. */
  readonly retry_after: Readonly<Record<string, number>>;
  readonly attempt_ok: string;
  readonly retry_after_outcomes: { readonly absent: string; readonly honoured: string; readonly ignored: string };
  readonly honoured_tolerance_seconds: number;
  readonly phases: { readonly attempts: string; readonly backoff: string };
}

export interface SecretRule {
  readonly id: string;
  readonly about: string;
  readonly triggers: readonly string[];
  /** Python `re` syntax (see `secrets.about`); redact.ts translates it. */
  readonly pattern: string;
  readonly accept?: "not_an_id";
  readonly precheck?: "long_run";
}

export interface SecretCase {
  readonly id: string;
  readonly text: string;
  readonly masked: string;
  readonly remember?: readonly string[];
  readonly limit?: number;
}

export interface Vocabulary {
  readonly version: 1;
  readonly failure_classes: readonly ("none" | "hard" | "soft" | "silent")[];
  readonly other: string;
  readonly reasons: { readonly hard: readonly string[]; readonly soft: readonly string[]; readonly silent: readonly string[] };
  /** HTTP status (as a string) -> its hard reason, and whether a retry policy re-attempts it. */
  readonly status_reasons: Readonly<Record<string, { readonly reason: string; readonly retryable: boolean }>>;
  readonly status_fallbacks: { readonly "4xx": string; readonly "5xx": string; readonly other: string };
  /** Hard reasons besides a status's that a retry policy re-attempts. */
  readonly retryable_reasons: readonly string[];
  /** Soft reasons, the most telling first. */
  readonly soft_priority: readonly string[];
  readonly finish_reasons: {
    readonly values: readonly string[];
    /** Finish reason -> the soft reason it means. */
    readonly failing: Spellings;
    /** Provider -> its spellings (lower case) -> a value. */
    readonly aliases: Readonly<Record<string, Spellings>>;
  };
  readonly video: {
    readonly statuses: Spellings;
    readonly terminal: readonly string[];
    readonly failure_reasons: Spellings;
  };
  readonly exceptions: { readonly python: ExceptionNames; readonly node: ExceptionNames };
  readonly filters: {
    readonly categories: readonly string[];
    readonly severities: readonly string[];
    readonly stages: readonly string[];
    readonly aliases: Spellings;
    /** A filter finish reason (lower case) -> its category. */
    readonly finish_reasons: Spellings;
  };
  readonly guard_stages: readonly string[];
  /** Outcomes of a judged tool call: the first passes, the others fail. */
  readonly tool_call_outcomes: readonly string[];
  readonly declared: DeclaredEntry;
  readonly ratelimit: RateLimitEntry;
  readonly labels: { readonly common: readonly string[]; readonly token_types: readonly string[] };
  readonly metrics: readonly MetricEntry[];
  readonly spans: {
    readonly semconv_version: string;
    readonly names: Spellings;
    readonly events: { readonly retry: string; readonly exception: string; readonly attempt: string };
    /** Attributes of the retry and attempt span events. */
    readonly event_attributes: {
      readonly attempt: string;
      readonly status: string;
      readonly status_code: string;
      readonly reason: string;
      readonly backoff: string;
      readonly wait: string;
      readonly retry_after: string;
    };
    readonly gen_ai: {
      readonly operation: string;
      readonly provider: string;
      readonly request_model: string;
      readonly response_model: string;
      readonly response_id: string;
      readonly finish_reasons: string;
      readonly stream: string;
      readonly time_to_first_chunk: string;
      readonly token_type: string;
      readonly input_messages: string;
      readonly output_messages: string;
      readonly system_instructions: string;
      readonly api_type: string;
      readonly server_address: string;
      readonly server_port: string;
      readonly error_type: string;
      readonly http_status: string;
    };
    /** Token type -> usage attribute. */
    readonly usage: Spellings;
    readonly failsight: {
      readonly failure_class: string;
      readonly failure_reason: string;
      readonly attempts: string;
      readonly retry_count: string;
      readonly call_site: string;
      readonly error_param: string;
      readonly error_code: string;
      readonly request_id: string;
      readonly error_message: string;
      readonly revised_prompt: string;
      readonly video_status: string;
      readonly cost_usd: string;
      readonly wasted_cost_usd: string;
      readonly tool_calls: string;
      readonly tool_calls_failed: string;
      readonly failed_tool: string;
    };
    /** The GenAI semantic conventions' client metrics (the Python package exports them over OTel). */
    readonly otel_metrics: Readonly<
      Record<string, { readonly name: string; readonly unit: string; readonly help: string; readonly buckets: readonly number[] }>
    >;
  };
  readonly operations: Readonly<Record<string, OperationEntry>>;
  /** API and SDK names a scope's `operation` may be given by mistake -> the label the patch records. */
  readonly operation_aliases: Spellings;
  readonly secrets: {
    readonly macros: Spellings;
    /** Python `re` syntax: the label before a 32-hex run that makes it an id, not a key. */
    readonly id_label: string;
    readonly mask: string;
    readonly rules: readonly SecretRule[];
    readonly cases: readonly SecretCase[];
  };
}

/** `value` with every object and array in it frozen, so no module can edit a table. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const item of Object.values(value)) deepFreeze(item);
    Object.freeze(value);
  }
  return value;
}

/**
 * The vocabulary parsed from `text`, checked to be version 1 and frozen (`from` names it in errors).
 *
 * @example parseVocabulary('{"version": 1}').version // 1
 */
export function parseVocabulary(text: string, from = "vocabulary.json"): Vocabulary {
  // Objects without a prototype: a provider's "constructor" or "__proto__" looked up in a table
  // is not in it (a plain object would answer with Object's own members).
  const data: unknown = JSON.parse(text, (_key, value: unknown) =>
    value !== null && typeof value === "object" && !Array.isArray(value) ? Object.assign(Object.create(null), value) : value,
  );
  const version = data !== null && typeof data === "object" ? (data as { version?: unknown }).version : undefined;
  if (version !== 1) {
    throw new Error(`failsight: ${from} is not a version 1 vocabulary file (version: ${JSON.stringify(version)})`);
  }
  return deepFreeze(data as Vocabulary);
}

const FILE = new URL("./vocabulary.json", import.meta.url);

export const VOCABULARY: Vocabulary = parseVocabulary(readFileSync(FILE, "utf8"), FILE.pathname);
