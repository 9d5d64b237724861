// Span attribute names (GenAI semantic conventions and failsight's own) and the span helpers:
// every span step is guarded on its own, so a broken tracer loses span detail, never a metric.
import { context, SpanStatusCode, trace, type Attributes, type Span, type SpanKind } from "@opentelemetry/api";
import type { State } from "./config.js";
import { guard, swallow } from "./guard.js";
import { maskSecrets } from "./redact.js";
import { TOKEN_TYPES, type Outcome } from "./taxonomy.js";

export const ATTR = {
  operation: "gen_ai.operation.name",
  provider: "gen_ai.provider.name",
  requestModel: "gen_ai.request.model",
  responseModel: "gen_ai.response.model",
  responseId: "gen_ai.response.id",
  finishReasons: "gen_ai.response.finish_reasons",
  stream: "gen_ai.request.stream",
  timeToFirstChunk: "gen_ai.response.time_to_first_chunk",
  apiType: "openai.api.type",
  serverAddress: "server.address",
  serverPort: "server.port",
  errorType: "error.type",
  httpStatus: "http.response.status_code",
  failureClass: "failsight.failure_class",
  failureReason: "failsight.failure_reason",
  attempts: "failsight.attempts",
  retryCount: "failsight.retry_count",
  callSite: "failsight.call_site",
  errorParam: "failsight.error.param",
  errorCode: "failsight.error.code",
  requestId: "failsight.request_id",
  videoStatus: "failsight.video.status",
} as const;

export const USAGE_ATTRIBUTES: Record<(typeof TOKEN_TYPES)[number], string> = {
  input: "gen_ai.usage.input_tokens",
  output: "gen_ai.usage.output_tokens",
  reasoning: "gen_ai.usage.reasoning.output_tokens",
  cached_input: "gen_ai.usage.cache_read.input_tokens",
};

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
          span.addEvent("exception", { "exception.type": type, "exception.message": maskSecrets(message) });
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
