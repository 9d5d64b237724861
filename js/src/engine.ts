// The call engine the SDK patch runs on. A Call is one SDK call: its CLIENT span, its HTTP
// attempts (SDK retries) and the account it reports to (account.ts). Every recording step is
// guarded, and the in-flight gauge is released in a `finally`, so a broken step can lose detail
// but never a count or leave the gauge up.
import { AsyncLocalStorage } from "node:async_hooks";
import { SpanKind, type Attributes, type Span } from "@opentelemetry/api";
import { Account } from "./account.js";
import { ended } from "./attempts.js";
import { classifyError } from "./classify.js";
import { getState, type State } from "./config.js";
import type { Declared } from "./declared.js";
import { guard, swallow } from "./guard.js";
import type { Operation } from "./operations.js";
import { maskRemembered } from "./redact.js";
import { ATTR, endSpan, errorAttributes, startSpan, USAGE_ATTRIBUTES } from "./spans.js";
import { outcome as makeOutcome, TOKEN_TYPES, type FailureClass, type Outcome } from "./taxonomy.js";

/** What runs now: the innermost traced scope's account, and the SDK call being sent. */
export interface Current {
  account?: Account;
  call?: Call;
}
export const current = new AsyncLocalStorage<Current>();

let callSeq = 0;
const TIMEOUT = "timeout";

// ------------------------------------------------------------------ one SDK call

export class Call {
  readonly values: Attributes;
  readonly start = performance.now();
  attempts = 0;
  attemptOutcome: Outcome | undefined;
  attemptEnd = 0;
  /** The backoff before the current attempt, in seconds. */
  wait: number | undefined;
  /** All of them: the call's time not spent in attempts. */
  backoff = 0;
  /** The wait the last answer asked for (Retry-After), in seconds. */
  asked: number | undefined;
  /** An attempt whose fetch was aborted, told apart (timeout or the caller's abort) by what follows. */
  private aborted = false;
  done = false;
  /** What the request declares (tools, structured output), when judged (judged.ts). */
  declared: Declared | undefined;
  readonly seq = ++callSeq; // names the call in its account's ledger (0 is the scope)

  constructor(
    readonly state: State,
    readonly op: Operation,
    readonly labels: [string, string, string, string],
    readonly account: Account | undefined,
    readonly own: boolean,
    readonly span: Span,
    stream: boolean,
    /** (provider, model) of the request: its rate limits' series. */
    readonly target: readonly [string, string] = [labels[1], labels[2]],
  ) {
    this.values = { [ATTR.apiType]: op.apiType, [ATTR.stream]: stream };
  }

  /** An HTTP attempt starts; after the first (or with a retry header) it is a retry. */
  attemptStarted(retryCount: number | undefined): void {
    if (this.aborted) this.settleAttempt(this.attemptOutcome ?? makeOutcome("hard", TIMEOUT)); // the SDK retries a timeout only
    guard("attempt", () => {
      this.attempts += 1;
      this.wait = undefined;
      const previous = this.attemptOutcome;
      this.attemptOutcome = undefined;
      if (this.attempts > 1 || (retryCount !== undefined && retryCount > 0)) {
        const reason = previous?.reason ?? "unknown";
        // the SDK's sleep: from the failed answer to this attempt
        const wait = this.attemptEnd ? (performance.now() - this.attemptEnd) / 1000 : undefined;
        this.wait = wait;
        this.backoff += wait ?? 0;
        // an error answer: no usage to waste
        this.account?.recordRetry(reason, { statusCode: previous?.statusCode, wait, span: this.span, wasted: null, retryAfter: this.asked });
      }
    });
  }

  /**
   * An HTTP attempt ended: answered (`o` undefined below 400, with the answer's status and
   * headers) or not; counted, and its rate-limit headers read.
   */
  attemptEnded(o: Outcome | undefined, statusCode?: number, headers?: unknown): void {
    this.attemptOutcome = o;
    this.attemptEnd = performance.now();
    guard("attempt", () => {
      this.asked = ended(this, o, statusCode, headers, this.wait);
    });
  }

  /**
   * An attempt's fetch was aborted: by the SDK's timeout (it retries, or throws its timeout error)
   * or by the caller. The fetch error cannot tell which, so the attempt is counted when that is
   * known: at the next attempt, the call's error, or its end.
   */
  attemptAborted(): void {
    this.attemptOutcome = makeOutcome("hard", TIMEOUT);
    this.attemptEnd = performance.now();
    this.aborted = true;
  }

  /** Count the aborted attempt, if one waits, as ending with `o`. */
  settleAttempt(o: Outcome): void {
    if (!this.aborted) return;
    this.aborted = false;
    const end = this.attemptEnd; // when it was aborted: the backoff runs from then
    this.attemptEnded(o);
    this.attemptEnd = end;
  }

  /** Tokens, finish reasons, response attributes and video progress of an answer. */
  record(o: Outcome): void {
    guard("call_record", () => {
      const account = this.account;
      if (account) {
        if (o.finishReasons.length) account.countFinishReasons(o.finishReasons);
        if (o.usage) account.addUsage(o.usage, this.seq);
      }
      if (o.videoStatus && o.responseId) {
        if (account) account.trackVideo(o.responseId, o.videoStatus);
        else this.state.videoJobs.update(o.responseId, o.videoStatus, this.labels);
      }
      const v = this.values;
      // a client key a server echoed there is masked; no pattern, so a model name stays as sent
      if (o.responseModel) v[ATTR.responseModel] = maskRemembered(o.responseModel);
      if (o.responseId) v[ATTR.responseId] = maskRemembered(o.responseId);
      if (o.finishReasons.length) v[ATTR.finishReasons] = [...o.finishReasons];
      if (o.usage) {
        for (const tokenType of TOKEN_TYPES) {
          const count = o.usage[tokenType];
          if (count !== undefined) v[USAGE_ATTRIBUTES[tokenType]] = count;
        }
      }
      if (o.videoStatus) v[ATTR.videoStatus] = o.videoStatus;
    });
  }

  /** A stream's first content arrived at performance.now() `at`. */
  firstChunk(at: number): void {
    guard("call_record", () => {
      const seconds = (at - this.start) / 1000;
      const m = this.state.metrics.timeToFirstToken;
      m.metric.observe(m.labels(this.account ? this.account.labels() : this.labels), seconds);
      this.values[ATTR.timeToFirstChunk] = seconds;
    });
  }

  /** End the call once: report to the account, settle an own request, end the span. */
  finish(o: Outcome, error?: unknown, cancelled = false): void {
    if (this.done) return;
    this.done = true;
    if (this.aborted) this.settleAttempt(this.attemptOutcome ?? o);
    let failureClass: FailureClass = o.transient ? "none" : o.failureClass;
    let reason = o.reason;
    const account = this.account;
    try {
      if (account && o.filters && o.filters.length) guard("call_finish", () => account.countFilters(o.filters ?? []));
      // the call's time, less its backoff, is attempt time
      if (account) account.root.timing[0] += (performance.now() - this.start) / 1000 - this.backoff;
      if (account && (!this.op.poll || o.failureClass === "soft")) {
        if (cancelled) account.callCancelled(this.op.name);
        else account.callFinished(this.op.name, o, this.seq);
      }
    } catch (e) {
      swallow("call_finish", e);
    } finally {
      try {
        if (this.own && account) [failureClass, reason] = account.close(error, error !== undefined && !cancelled);
      } finally {
        this.endSpan(failureClass, reason, o, error);
      }
    }
  }

  private endSpan(failureClass: FailureClass, reason: string | undefined, o: Outcome, error: unknown): void {
    const v = this.values;
    const failed = failureClass !== "none";
    try {
      v[ATTR.failureClass] = failureClass;
      const account = this.account;
      if (account) {
        v[ATTR.callSite] = account.callSite;
        if (this.own) {
          v[ATTR.attempts] = 1 + account.retries;
          v[ATTR.retryCount] = account.retries;
        }
      }
      if (failed && reason !== undefined) {
        v[ATTR.failureReason] = reason;
        v[ATTR.errorType] = o.reason === reason && o.errorType ? o.errorType : reason;
      }
      errorAttributes(v, o);
    } catch (e) {
      swallow("call_finish", e);
    } finally {
      endSpan(this.span, v, failed ? reason : undefined, error);
    }
  }
}

/** Start a call from what is known of it; undefined when even that failed (pass through). */
export function startCall(
  op: Operation,
  model: string,
  provider: string,
  address: string | undefined,
  port: number | undefined,
  stream: boolean,
): Call | undefined {
  try {
    const state = getState();
    const attributes: Attributes = {
      [ATTR.operation]: op.name,
      [ATTR.provider]: provider,
      [ATTR.requestModel]: model,
    };
    if (address !== undefined) attributes[ATTR.serverAddress] = address;
    if (port !== undefined) attributes[ATTR.serverPort] = port;
    const store = current.getStore();
    const parent = store?.account;
    const parentSpan = store?.call?.span ?? parent?.span;
    const span = startSpan(state, `${op.name} ${model}`, SpanKind.CLIENT, attributes, parentSpan);
    if (parent && !parent.closed) {
      try {
        parent.noteCall(op.name, provider, model);
        if (!op.poll) parent.callStarted(op.name);
      } catch (error) {
        swallow("call_start", error);
      }
      return new Call(state, op, parent.labels(), parent, false, span, stream, [provider, model]);
    }
    const labels: [string, string, string, string] = [op.name, provider, model, "unscoped"];
    if (op.poll) return new Call(state, op, labels, undefined, false, span, stream);
    const account = new Account(state, "unscoped", { operation: op.name, model, provider, span });
    return new Call(state, op, labels, account, true, span, stream);
  } catch (error) {
    swallow("call_start", error);
    return undefined;
  }
}

/**
 * The call failed with `error`: record what the error carries, then finish. `seen` is what a
 * stream reported before it failed (usage, finish reasons, filters): recorded too, since usage
 * seen is usage counted (and wasted, as the call failed), however the stream ends.
 */
export function fail(call: Call, error: unknown, cancelled = false, seen?: Outcome): void {
  let o = makeOutcome();
  try {
    o = classifyError(error);
    call.settleAttempt(o); // an aborted fetch: the SDK's timeout error, or the caller's abort
    if (seen) {
      call.record(seen);
      if (seen.filters?.length) o = { ...o, filters: [...(o.filters ?? []), ...seen.filters] }; // counted at the finish
      // what the error carries adds only what `seen` lacks: nothing twice
      const extra = { ...o, usage: seen.usage ? undefined : o.usage, finishReasons: seen.finishReasons.length ? [] : o.finishReasons };
      if (extra.finishReasons.length) call.record(extra);
    } else if (o.finishReasons.length) call.record(o);
  } catch (e) {
    swallow("call_record", e);
  } finally {
    call.finish(o, error, cancelled);
  }
}
