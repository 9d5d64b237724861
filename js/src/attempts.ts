// Every attempt of an API call, the backoff before each retry, and the rate-limit headroom the
// answers report (the Python package's _attempts; docs/reference.md, "Attempts and backoff" and
// "Rate-limit headroom"). The engine's Call hands each HTTP attempt's end here (each SDK-internal
// retry is one); the account hands each retry's wait here. Header values that do not parse are
// counted in `genai_telemetry_errors_total{stage="ratelimit_header"}`, once each, and ignored.
import type { Attributes, Span } from "@opentelemetry/api";
import { swallow } from "./guard.js";
import type { MetricSet } from "./metrics.js";
import { readHeaders, type Reading } from "./ratelimit.js";
import { EVENT_ATTRIBUTES, EVENTS } from "./spans.js";
import type { Outcome } from "./taxonomy.js";
import { VOCABULARY } from "./vocabulary.js";

const SPEC = VOCABULARY.ratelimit;
export const ATTEMPT_OK: string = SPEC.attempt_ok;
/** `phase` label values of request_phase_seconds: time in attempts, time in backoff. */
export const PHASES: readonly [string, string] = [SPEC.phases.attempts, SPEC.phases.backoff];
const ASKED = SPEC.retry_after_outcomes;
const TOLERANCE = SPEC.honoured_tolerance_seconds;
const STAGE = "ratelimit_header";

/** What of an API call the attempt recording reads (engine.ts's Call). */
export interface AttemptCall {
  readonly state: { readonly metrics: MetricSet };
  /** (operation, provider, model, call_site) as the call started. */
  readonly labels: readonly [string, string, string, string];
  /** Undefined: an unscoped video poll (a job step, not a request). */
  readonly account: { labels(): readonly [string, string, string, string] } | undefined;
  /** (provider, model) of the request: its rate limits' series. */
  readonly target: readonly [string, string];
  readonly attempts: number;
  readonly span: Span;
}

/**
 * The `retry_after` label of a backoff of `wait` seconds after a server asked `asked`.
 *
 * @example [backoffLabel(1, undefined), backoffLabel(2, 2), backoffLabel(0.5, 2)] // ["absent", "honoured", "ignored"]
 */
export function backoffLabel(wait: number, asked: number | undefined): string {
  if (asked === undefined) return ASKED.absent;
  return wait + TOLERANCE >= asked ? ASKED.honoured : ASKED.ignored;
}

/** A rate-limit header whose value failsight could not read (counted, never thrown). */
class MalformedHeader extends Error {
  override name = "MalformedHeader";
}

/** Set the headroom gauges of (provider, model) from one answer's reading; a 0 is a value. */
export function recordReading(metrics: MetricSet, provider: string, model: string, reading: Reading): void {
  const gauges = [metrics.ratelimitRemaining, metrics.ratelimitLimit, metrics.ratelimitReset] as const;
  for (const { resource, limit, remaining, reset } of reading.figures) {
    // a series is made only when its value comes: one that never had one must not read 0
    [remaining, limit, reset].forEach((value, i) => {
      if (value === undefined) return;
      const gauge = gauges[i]!;
      gauge.metric.set(gauge.labels([provider, model, resource]), value);
    });
  }
  for (const name of reading.malformed) swallow(STAGE, new MalformedHeader(`the value of the ${name} header is not readable`));
}

/**
 * Count one attempt of `call` that ended with `o` (undefined: answered below 400), read its
 * answer's rate-limit headers, and add an `attempt` span event unless it is the call's lone
 * successful attempt. Returns the wait the answer asked for (Retry-After), if any.
 */
export function ended(
  call: AttemptCall,
  o: Outcome | undefined,
  statusCode: number | undefined,
  headers: unknown,
  wait: number | undefined,
): number | undefined {
  const status = o === undefined ? ATTEMPT_OK : (o.reason ?? "exception");
  const m = call.state.metrics.attemptCount;
  // an unscoped video poll: the call's own labels
  m.metric.inc(m.labels([...(call.account?.labels() ?? call.labels), status]));
  let asked = o?.retryAfter;
  if (headers !== undefined) {
    const reading = readHeaders(headers);
    if (reading !== undefined) {
      recordReading(call.state.metrics, call.target[0], call.target[1], reading);
      if (reading.retryAfter !== undefined) asked = reading.retryAfter;
    }
  }
  const span = call.span;
  if ((o !== undefined || call.attempts > 1) && span.isRecording()) {
    const event: Attributes = { [EVENT_ATTRIBUTES.attempt]: call.attempts, [EVENT_ATTRIBUTES.status]: status };
    if (statusCode !== undefined) event[EVENT_ATTRIBUTES.status_code] = statusCode;
    if (wait !== undefined) event[EVENT_ATTRIBUTES.backoff] = wait;
    if (asked !== undefined) event[EVENT_ATTRIBUTES.retry_after] = asked;
    span.addEvent(EVENTS.attempt, event);
  }
  return asked;
}
