// The account of one logical request: it belongs to one traced scope or to one unscoped API
// call; the outermost one is the logical request and counts requests, failures, attempts and
// duration exactly once, in close(). It keeps the request's usage not yet wasted (its ledger)
// and counts what a failure or a retry wastes. Every recording step is guarded.
import type { Attributes, Span } from "@opentelemetry/api";
import { classifyScopeError } from "./agents.js";
import { backoffLabel, PHASES } from "./attempts.js";
import type { State } from "./config.js";
import { guard, swallow } from "./guard.js";
import { sanitizeReason } from "./redact.js";
import { ATTR, errorAttributes, EVENT_ATTRIBUTES, EVENTS, USAGE_ATTRIBUTES } from "./spans.js";
import {
  HARD_REASONS,
  NON_RETRYABLE_CLIENT_ERRORS,
  SOFT_REASONS,
  TOKEN_TYPES,
  type TokenType,
  VIDEO_FAILURE_REASONS,
  type FailureClass,
  type Filter,
  type Outcome,
  type Usage,
} from "./taxonomy.js";

export const UNKNOWN = "unknown";

// Errors of the SDK's `parse()` that judged.ts turned into the silent failure of their call: the
// request's reason is the judgement's, not the error's.
const judgedErrors = new WeakSet<object>();

/** `error` (thrown by `parse()` on an answer judged silent) is explained by its judgement. */
export function rememberJudged(error: unknown): void {
  if (error !== null && (typeof error === "object" || typeof error === "function")) judgedErrors.add(error);
}

// Common code throws a plain Error after a content_filter, and a TimeoutError after a video
// stuck in its queue: the failure recorded inside the scope is the real reason then. So is an
// error saying the answer was wrong (a silent outcome: an agent framework's ModelBehaviorError,
// or `parse()` refusing an answer the judgement already named): the recorded failure names it.
function explainedByRecorded(error: unknown, o: Outcome): boolean {
  if (o.reason === "exception" || o.failureClass === "silent") return true;
  if (error !== null && typeof error === "object" && judgedErrors.has(error)) return true;
  return error instanceof Error && error.name === "TimeoutError" && !("status" in error);
}

export type Verdict = [FailureClass, string | undefined, Outcome | undefined];

// The failure class a reason belongs to; a validator's own name is silent, and `unknown` (an SDK
// retry whose failed attempt left no reason) hard, as in Python's class_of_reason.
export function classOfReason(reason: string): FailureClass {
  if (HARD_REASONS.has(reason) || reason === UNKNOWN) return "hard";
  if (SOFT_REASONS.has(reason)) return "soft";
  return "silent";
}

/** Take every entry the scope (its nested scopes included) reported (`wasted` of recordRetry). */
export const ANY = -1;
const MAX_LEDGER = 32;

/**
 * Usage of a logical request not yet known to be wasted, by the call that reported it (0: the
 * scope) and the scope it was reported in. The rule (README "Wasted tokens and spend"): a
 * request that ends failed wastes all its usage not wasted already; a call retried inside a
 * scope wastes that call's usage; a scope re-run by its retry policy, or a retry recorded by
 * hand, wastes the usage reported in that scope (nested scopes included) since it began or its
 * previous retry, never an enclosing scope's; an SDK-internal retry re-sends an error answer:
 * nothing wasted.
 */
interface Entry {
  call: number;
  owner: Account;
  labels: [string, string, string, string];
  counts: Partial<Record<TokenType, number>>;
}

export class Account {
  readonly root: Account;
  operation: string;
  model: string;
  provider: string;
  retries = 0;
  retrying = false;
  failure: [FailureClass, string] | undefined;
  inner: [string, FailureClass, string, number] | undefined; // (operation, class, reason, call) of the last call
  retried: [FailureClass, string] | undefined; // a retried attempt's failure, until more happens in the scope
  private ledger: Entry[] | undefined; // the root's usage not yet wasted
  readonly finishReasons: string[] = [];
  readonly usage: Partial<Record<TokenType, number>> = {};
  readonly videoKeys: unknown[] = [];
  waited = 0;
  /** Seconds in API calls (less their backoff) and in backoff, summed on the root. */
  readonly timing: [number, number] = [0, 0];
  handle: unknown;
  closed = false;
  /** The scope's `judgeDeclared` (inherited from the enclosing scope); undefined: as configured. */
  judgeDeclared: boolean | undefined;
  private verdict: Verdict = ["none", undefined, undefined];
  private readonly start = performance.now();
  private inFlight: Record<string, string> | undefined;

  constructor(
    readonly state: State,
    readonly callSite: string,
    options: { operation?: string; model?: string; provider?: string; parent?: Account; span?: Span } = {},
  ) {
    this.parent = options.parent;
    this.root = options.parent ? options.parent.root : this;
    this.operation = options.operation || UNKNOWN;
    this.model = options.model || UNKNOWN;
    this.provider = options.provider || UNKNOWN;
    this.span = options.span;
    if (!this.parent) {
      try {
        const labels = state.metrics.inFlight.labels(this.labels());
        state.metrics.inFlight.metric.inc(labels);
        this.inFlight = labels; // only once incremented: close decrements it
      } catch (error) {
        swallow("account", error);
      }
    }
  }

  readonly parent: Account | undefined;
  readonly span: Span | undefined;

  labels(): [string, string, string, string] {
    const r = this.root;
    return [r.operation, r.provider, r.model, r.callSite];
  }

  /** Fill unknown labels from a call made inside the scope (the first call wins). */
  noteCall(operation: string, provider: string, model: string): void {
    this.retried = undefined; // the retry is being made
    for (const account of [this, this.root]) {
      if (account.operation === UNKNOWN) account.operation = operation;
      if (account.provider === UNKNOWN) account.provider = provider;
      if (account.model === UNKNOWN) account.model = model;
    }
  }

  setModel(model: string): void {
    this.model = model;
    if (this.root.model === UNKNOWN) this.root.model = model;
  }

  countFinishReasons(reasons: readonly string[]): void {
    const m = this.state.metrics.finishReasons;
    this.retried = undefined;
    for (const reason of reasons) {
      m.metric.inc(m.labels([...this.labels(), reason]));
      for (let a: Account | undefined = this; a; a = a.parent) if (a.finishReasons.length < 64) a.finishReasons.push(reason);
    }
  }

  addUsage(usage: Usage, call = 0): void {
    this.retried = undefined;
    const m = this.state.metrics.tokens;
    const labels = this.labels();
    for (const tokenType of TOKEN_TYPES) {
      const count = usage[tokenType];
      if (count === undefined) continue;
      m.metric.inc(m.labels([...labels, tokenType]), count);
      for (let a: Account | undefined = this; a; a = a.parent) a.usage[tokenType] = (a.usage[tokenType] ?? 0) + count;
    }
    const root = this.root;
    const ledger = (root.ledger ??= []);
    let last = ledger[ledger.length - 1];
    if (last === undefined || last.call !== call || last.owner !== this || last.labels.join("\u0000") !== labels.join("\u0000")) {
      if (ledger.length >= MAX_LEDGER) {
        const oldest = ledger[0]!;
        const later = ledger.slice(1).find((e) => e.owner === oldest.owner && e.labels.join("\u0000") === oldest.labels.join("\u0000"));
        if (later !== undefined) {
          for (const tokenType of TOKEN_TYPES) {
            const n = oldest.counts[tokenType];
            if (n) later.counts[tokenType] = (later.counts[tokenType] ?? 0) + n;
          }
          later.call = 0;
          ledger.shift();
        }
      }
      last = { call, owner: this, labels, counts: {} };
      ledger.push(last);
    }
    for (const tokenType of TOKEN_TYPES) {
      const count = usage[tokenType];
      if (count) last.counts[tokenType] = (last.counts[tokenType] ?? 0) + count;
    }
  }

  /** Count the usage of `call` (ANY: all this scope reported) not wasted yet as wasted, with (failureClass, reason). */
  waste(call: number, failureClass: FailureClass, reason: string): void {
    const root = this.root;
    const ledger = root.ledger;
    if (!ledger || ledger.length === 0) return;
    const taking = call === ANY ? (e: Entry) => this.encloses(e.owner) : (e: Entry) => e.call === call;
    const taken = ledger.filter(taking);
    root.ledger = ledger.filter((e) => !taking(e));
    const m = this.state.metrics.wastedTokens;
    for (const entry of taken) {
      for (const tokenType of TOKEN_TYPES) {
        const count = entry.counts[tokenType];
        if (count) m.metric.inc(m.labels([...entry.labels, tokenType, failureClass, reason]), count);
      }
    }
  }

  // A nested scope that ended retries no more: what it reported is its parent's to waste.
  private handOver(): void {
    const parent = this.parent;
    if (parent) for (const e of this.root.ledger ?? []) if (e.owner === this) e.owner = parent;
  }

  /** This scope is `account` or one it nests in. */
  private encloses(account: Account): boolean {
    for (let a: Account | undefined = account; a; a = a.parent) if (a === this) return true;
    return false;
  }

  /** Count content-filter categories a provider reported. */
  countFilters(filters: readonly Filter[]): void {
    const m = this.state.metrics.contentFilter;
    const labels = this.labels();
    for (const [category, stage, severity] of filters.slice(0, 64)) m.metric.inc(m.labels([...labels, category, stage, severity]));
  }

  /**
   * Count one retry with the reason of the attempt that failed; a `retry` event on `span` or the
   * scope's. `wasted` is what the retried attempt spent: a call's number, null (nothing), or ANY:
   * the scope's attempt is retried, so all it reported since its previous retry, and its failures
   * are the failed attempt's: they name the request only if nothing follows (unless it is a
   * `rerun` by the policy, whose attempt ended in the exception it re-runs after). A `wait` is a
   * backoff, observed with the `retryAfter` the server had asked for.
   */
  recordRetry(
    reason: string,
    options: {
      statusCode?: number;
      wait?: number;
      span?: Span;
      failureClass?: FailureClass;
      wasted?: number | null;
      rerun?: boolean;
      retryAfter?: number;
    } = {},
  ): void {
    const clean = sanitizeReason(String(reason));
    this.root.retries += 1;
    const wasted = options.wasted === undefined ? ANY : options.wasted;
    if (wasted === ANY) {
      // A new attempt: the next call is this retry, not another, and what failed before is the failed attempt's.
      const inner = this.inner;
      const failed = options.rerun ? undefined : (this.failure ?? (inner ? ([inner[1], inner[2]] as [FailureClass, string]) : undefined));
      this.retried = failed ?? (options.rerun ? undefined : this.retried);
      this.inner = this.failure = undefined;
    }
    const m = this.state.metrics.retries;
    m.metric.inc(m.labels([...this.labels(), clean]));
    const { wait, retryAfter } = options;
    if (wait !== undefined) {
      guard("account", () => {
        const b = this.state.metrics.backoff;
        b.metric.observe(b.labels([...this.labels(), backoffLabel(wait, retryAfter)]), wait);
        this.root.timing[1] += wait;
      });
    }
    if (wasted !== null) guard("account", () => this.waste(wasted, options.failureClass ?? classOfReason(clean), clean));
    const span = options.span ?? this.span;
    if (span) {
      guard("record_retry", () => {
        if (!span.isRecording()) return;
        const names = EVENT_ATTRIBUTES;
        const event: Attributes = { [names.attempt]: this.root.retries + 1, [names.reason]: clean };
        if (options.statusCode !== undefined) event[names.status_code] = options.statusCode;
        if (wait !== undefined) event[names.wait] = wait;
        if (retryAfter !== undefined) event[names.retry_after] = retryAfter;
        span.addEvent(EVENTS.retry, event);
      });
    }
  }

  trackVideo(key: unknown, status: string): string | undefined {
    const root = this.root;
    if (!root.videoKeys.includes(key) && root.videoKeys.length < 64) root.videoKeys.push(key);
    return this.state.videoJobs.update(key, status, this.labels());
  }

  recordVideoStatus(status: string, jobId?: string): void {
    this.trackVideo(jobId ?? this.root, status);
    const failure = VIDEO_FAILURE_REASONS[status];
    if (failure !== undefined) this.failure = ["soft", failure];
  }

  markFailure(failureClass: FailureClass, reason: string): void {
    this.failure = [failureClass, sanitizeReason(String(reason))];
  }

  /** A call begins: after a failed call of the same operation it is a retry, except after a client error. */
  callStarted(operation: string): void {
    const inner = this.inner;
    if (inner !== undefined && inner[0] === operation) {
      this.inner = undefined;
      if (!NON_RETRYABLE_CLIENT_ERRORS.has(inner[2])) this.recordRetry(inner[2], { failureClass: inner[1], wasted: inner[3] });
    }
  }

  callFinished(operation: string, o: Outcome, call = 0): void {
    if (o.failureClass !== "none" && !o.transient) this.inner = [operation, o.failureClass, o.reason ?? "exception", call];
    else if (this.inner !== undefined && this.inner[0] === operation) this.inner = undefined;
  }

  callCancelled(operation: string): void {
    if (this.inner !== undefined && this.inner[0] === operation) this.inner = undefined;
  }

  /** End once: the root counts the logical request; an inner account passes its failure up. */
  close(error?: unknown, hasError = error !== undefined, validation?: [FailureClass, string]): Verdict {
    if (this.closed) return this.verdict;
    this.closed = true;
    let verdict: Verdict = hasError ? ["hard", "exception", undefined] : ["none", undefined, undefined];
    try {
      verdict = this.resolve(error, hasError, validation);
    } catch (e) {
      swallow("account", e);
    } finally {
      this.verdict = verdict;
      if (!this.parent && verdict[0] !== "none") guard("account", () => this.waste(ANY, verdict[0], verdict[1] ?? "exception"));
      if (!this.parent) this.count(verdict[0], verdict[1]);
      else {
        guard("account", () => this.handOver());
        if (verdict[0] !== "none" && verdict[1] !== undefined) this.parent.failure = [verdict[0], verdict[1]];
      }
    }
    return verdict;
  }

  private resolve(error: unknown, hasError: boolean, validation?: [FailureClass, string]): Verdict {
    if (hasError && !this.parent) {
      for (const key of this.videoKeys) if (this.state.videoJobs.end(key)) this.failure = ["soft", "video_timeout"];
    }
    const o = hasError ? classifyScopeError(error) : undefined;
    if (o !== undefined && !explainedByRecorded(error, o)) return [o.failureClass, o.reason, o];
    if (this.failure !== undefined) return [this.failure[0], this.failure[1], o];
    if (this.inner !== undefined) return [this.inner[1], this.inner[2], o];
    if (this.retried !== undefined) return [this.retried[0], this.retried[1], o]; // a retry recorded, and nothing after it
    if (o !== undefined) return [o.failureClass, o.reason, o];
    if (validation !== undefined) return [validation[0], validation[1], undefined];
    return ["none", undefined, undefined];
  }

  private count(failureClass: FailureClass, reason: string | undefined): void {
    const seconds = (performance.now() - this.start) / 1000;
    const m = this.state.metrics;
    const labels = this.labels();
    try {
      guard("account", () => m.requests.metric.inc(m.requests.labels([...labels, failureClass])));
      if (failureClass !== "none") {
        guard("account", () => m.failures.metric.inc(m.failures.labels([...labels, failureClass, reason ?? "exception"])));
      }
      guard("account", () => {
        m.attempts.metric.observe(m.attempts.labels(labels), 1 + this.retries);
        PHASES.forEach((phase, i) => m.phases.metric.observe(m.phases.labels([...labels, phase]), this.timing[i]!));
      });
      guard("account", () => m.duration.metric.observe(m.duration.labels([...labels, failureClass]), seconds));
    } finally {
      const inFlight = this.inFlight;
      this.inFlight = undefined;
      if (inFlight) guard("account", () => m.inFlight.metric.dec(inFlight));
    }
  }

  /** The INTERNAL span's attributes of a closed scope. */
  scopeAttributes(verdict: Verdict): Attributes {
    const [failureClass, reason, o] = verdict;
    const values: Attributes = {
      [ATTR.failureClass]: failureClass,
      [ATTR.attempts]: 1 + this.root.retries,
      [ATTR.retryCount]: this.root.retries,
      [ATTR.callSite]: this.callSite,
    };
    if (failureClass !== "none" && reason !== undefined) values[ATTR.failureReason] = reason;
    if (this.finishReasons.length) values[ATTR.finishReasons] = [...this.finishReasons];
    for (const tokenType of TOKEN_TYPES) {
      const count = this.usage[tokenType];
      if (count !== undefined) values[USAGE_ATTRIBUTES[tokenType]] = count;
    }
    if (this.model !== UNKNOWN) values[ATTR.requestModel] = this.model;
    if (this.operation !== UNKNOWN) values[ATTR.operation] = this.operation;
    if (o) errorAttributes(values, o);
    if (failureClass !== "none") {
      values[ATTR.errorType] = o && o.reason === reason && o.errorType ? o.errorType : (reason ?? "exception");
    }
    return values;
  }
}
