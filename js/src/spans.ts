// Span attribute names (GenAI semantic conventions and failsight's own) and the span helpers:
// every span step is guarded on its own, so a broken tracer loses span detail, never a metric.
import { context, SpanStatusCode, trace, type Attributes, type Span, type SpanKind } from "@opentelemetry/api";
import type { State } from "./config.js";
import { guard, swallow } from "./guard.js";
import { maskSecrets } from "./redact.js";
import type { Outcome, TokenType } from "./taxonomy.js";
import { VOCABULARY } from "./vocabulary.js";

const SPANS = VOCABULARY.spans;

type Camel<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<Camel<Tail>>}` : S;
type CamelKeys<T> = { readonly [K in keyof T & string as Camel<K>]: string };

/** `table` with its snake_case keys in camelCase: `request_model` -> `requestModel`. */
function camelKeys<T extends object>(table: T): CamelKeys<T> {
  const entries = Object.entries(table).map(([key, value]) => [key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()), value]);
  return Object.fromEntries(entries) as CamelKeys<T>;
}

/** Span attribute names (the vocabulary's `spans.gen_ai` and `spans.failsight`), keys in camelCase. */
export const ATTR = Object.freeze({ ...camelKeys(SPANS.gen_ai), ...camelKeys(SPANS.failsight) });

/** Span event names (`spans.events`). */
export const EVENTS = SPANS.events;

/** Attributes of the retry and attempt span events (`spans.event_attributes`). */
export const EVENT_ATTRIBUTES = SPANS.event_attributes;

/** Token type -> its usage attribute (`spans.usage`). */
export const USAGE_ATTRIBUTES = SPANS.usage as Readonly<Record<TokenType, string>>;

export function startSpan(state: State, name: string, kind: SpanKind, attributes: Attributes, parent?: Span): Span {
  try {
    const ctx = parent ? trace.setSpan(context.active(), parent) : context.active();
    return state.tracer.startSpan(name, { kind, attributes }, ctx);
  } catch (error) {
    swallow("span", error);
    return trace.wrapSpanContext({ traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 });
  }
}

function recording(span: Span): boolean {
  try {
    return span.isRecording();
  } catch (error) {
    swallow("span", error);
    return false;
  }
}

/** Set `values`, the ERROR status and the exception event, then end: each step on its own. */
export function endSpan(span: Span, values: Attributes, failureReason?: string, error?: unknown): void {
  try {
    if (recording(span)) {
      guard("span", () => span.setAttributes(values));
      if (failureReason !== undefined) guard("span", () => span.setStatus({ code: SpanStatusCode.ERROR, message: failureReason }));
      if (error !== undefined) {
        guard("span", () => {
          const type = error instanceof Error ? error.constructor.name : typeof error;
          const message = error instanceof Error ? error.message : String(error);
          span.addEvent(SPANS.events.exception, { "exception.type": type, "exception.message": maskSecrets(message) });
        });
      }
    }
  } finally {
    guard("span", () => span.end());
  }
}

export function errorAttributes(values: Attributes, o: Outcome): void {
  if (o.statusCode !== undefined) values[ATTR.httpStatus] = o.statusCode;
  if (o.errorParam !== undefined) values[ATTR.errorParam] = maskSecrets(o.errorParam);
  if (o.errorCode !== undefined) values[ATTR.errorCode] = maskSecrets(o.errorCode);
  if (o.requestId !== undefined) values[ATTR.requestId] = maskSecrets(o.requestId);
}
