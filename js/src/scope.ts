// tracedGeneration: a traced scope around a call site; currentGeneration: its handle.
import { context, SpanKind, trace, type Span } from "@opentelemetry/api";
import { Account, UNKNOWN, type Verdict } from "./account.js";
import { classifyError } from "./classify.js";
import { getState } from "./config.js";
import { current } from "./engine.js";
import { guard, swallow } from "./guard.js";
import { sanitizeReason } from "./redact.js";
import { RetryPolicy, type RetryOptions } from "./retry.js";
import { endSpan, startSpan } from "./spans.js";
import { normalizeFinishReason, normalizeVideoStatus, type FailureClass, type Usage } from "./taxonomy.js";
import { checkOperation } from "./decoration.js";
import { checkOptions, repr } from "./repr.js";
import type { Validator } from "./validators.js";

export interface TracedGenerationOptions {
  /** The `call_site` label (default: the function's name). */
  name?: string;
  /** The `operation` label (default: that of the first API call inside). */
  operation?: string;
  /** The `model` label (default: that of the first API call inside). */
  model?: string;
  /** Validators run on the result; one that returns false or throws marks the call `silent`. */
  validate?: Validator | readonly Validator[];
  /** Re-run the function on transient hard failures: an attempt count or a policy. */
  retry?: number | RetryPolicy | RetryOptions;
  /**
   * Judge the answers of the calls inside against what their requests declare (tools,
   * structured output); undefined: as `configure({ judgeDeclared })` says (an enclosing scope's
   * choice first). The judgement runs before `validate`: the first failure found is the reason.
   */
  judgeDeclared?: boolean;
}

type Prepared = [string, Validator][];

// Set on the validator factories (validators.ts) to the call that was meant.
const FACTORY = Symbol.for("failsight.validatorFactory");

/**
 * TypeError unless `item` can be a validator: a function taking one argument, the result, that
 * answers at once (an async function's promise would pass every result).
 *
 * @example checkValidator(jsonOutput()) // passes; checkValidator(jsonOutput) throws
 */
function checkValidator(item: unknown): asserts item is Validator {
  const meant = typeof item === "function" ? (item as unknown as Record<symbol, unknown>)[FACTORY] : undefined;
  if (typeof meant === "string") {
    throw new TypeError(`failsight: validate: ${(item as () => unknown).name} is the factory, not a validator; did you mean ${meant}?`);
  }
  if (typeof item !== "function") {
    throw new TypeError(
      `failsight: validate: ${repr(item)} is not a validator (a validator is a function (result) => boolean, e.g. jsonOutput())`,
    );
  }
  if (item.length > 1) {
    throw new TypeError(
      `failsight: validate: ${item.name || "an anonymous function"} takes ${item.length} arguments and cannot be a validator: ` +
        "a validator takes one argument, the result (e.g. (result) => Boolean(result))",
    );
  }
  if (item.constructor?.name === "AsyncFunction") {
    throw new TypeError(
      `failsight: validate: ${item.name || "an anonymous function"} is async, and a promise would pass every result: ` +
        "a validator answers at once (check asynchronously inside the traced function instead)",
    );
  }
}

/** [reason, validator] pairs, checked when the traced function is made. */
function prepare(validate: unknown): Prepared {
  if (validate === undefined || validate === null) return [];
  if (typeof validate === "string") {
    throw new TypeError(
      `failsight: tracedGeneration({ validate }) takes a validator or an array of validators, not a string (${repr(validate)}); ` +
        "e.g. validate: jsonOutput() or validate: [nonEmpty(), minWords(5)]",
    );
  }
  let items: unknown[];
  if (typeof validate === "function") items = [validate];
  else if (typeof (validate as Iterable<unknown>)[Symbol.iterator] === "function") items = [...(validate as Iterable<unknown>)];
  else throw new TypeError(`failsight: tracedGeneration({ validate }) takes a validator or an array of validators, got ${repr(validate)}`);
  return items.map((item) => {
    checkValidator(item);
    return [sanitizeReason(item.name || "validator"), item];
  });
}

function runValidators(validators: Prepared, result: unknown): [FailureClass, string] | undefined {
  for (const [reason, validator] of validators) {
    try {
      if (validator(result) === false) return ["silent", reason];
    } catch (error) {
      swallow("validator", error);
      return ["silent", reason];
    }
  }
  return undefined;
}

function open(site: string, operation?: string, model?: string, retrying = false, judgeDeclared?: boolean): Account | undefined {
  try {
    const state = getState();
    const parent = current.getStore()?.account;
    const span = startSpan(state, site, SpanKind.INTERNAL, {}, parent?.span);
    const account = new Account(state, site, { operation, model, parent, span });
    account.retrying = retrying;
    account.judgeDeclared = judgeDeclared ?? parent?.judgeDeclared;
    if (parent) guard("scope_start", () => parent.noteCall(account.operation, account.provider, account.model));
    return account;
  } catch (error) {
    swallow("scope_start", error);
    return undefined;
  }
}

function finish(account: Account | undefined, hasError: boolean, error: unknown, result?: unknown, validators: Prepared = []): void {
  if (!account || account.closed) return;
  let verdict: Verdict = ["none", undefined, undefined];
  let validation: [FailureClass, string] | undefined;
  try {
    if (!hasError && validators.length) validation = runValidators(validators, result);
  } finally {
    try {
      verdict = account.close(error, hasError, validation);
    } finally {
      if (account.span) {
        let values = {};
        try {
          values = account.scopeAttributes(verdict);
        } catch (e) {
          swallow("scope_finish", e);
        }
        endSpan(account.span, values, verdict[0] !== "none" ? (verdict[1] ?? "exception") : undefined, hasError ? error : undefined);
      }
    }
  }
}

/**
 * Trace a call site that generates with an OpenAI-compatible API. The returned function has
 * the same arguments and resolves or rejects exactly as `fn` does.
 *
 * @example
 * const classify = tracedGeneration({ name: "classify", validate: [oneOf(["yes", "no"])], retry: 3 },
 *   async (text: string) => (await client.chat.completions.create({ ... })).choices[0].message.content);
 */
export function tracedGeneration<A extends unknown[], R>(
  options: TracedGenerationOptions,
  fn: (...args: A) => R | Promise<R>,
): (...args: A) => Promise<R> {
  checkOptions("tracedGeneration(options, fn)", options, ["name", "operation", "model", "validate", "retry", "judgeDeclared"]);
  if (typeof fn !== "function") throw new TypeError(`failsight: tracedGeneration(options, fn) takes a function, got ${repr(fn)}`);
  for (const key of ["name", "operation", "model"] as const) {
    const value = options[key];
    if (value !== undefined && (typeof value !== "string" || value === "")) {
      throw new TypeError(`failsight: tracedGeneration({ ${key} }) takes a non-empty string, got ${repr(value)}`);
    }
  }
  if (options.operation !== undefined) checkOperation(options.operation);
  const { judgeDeclared } = options;
  if (judgeDeclared !== undefined && typeof judgeDeclared !== "boolean") {
    throw new TypeError(
      `failsight: tracedGeneration({ judgeDeclared }) takes true, false or undefined (as configure({ judgeDeclared }) says), got ${repr(judgeDeclared)}`,
    );
  }
  const validators = prepare(options.validate);
  const policy = RetryPolicy.coerce(options.retry);
  const site = options.name ?? (fn.name || "anonymous");
  const { operation, model } = options;

  return async function traced(this: unknown, ...args: A): Promise<R> {
    const account = open(site, operation, model, policy !== undefined && policy.maxAttempts > 1, judgeDeclared);
    const started = performance.now();
    const run = (): Promise<R> => {
      const call = () => Promise.resolve().then(() => fn.apply(this, args));
      if (!account) return call();
      const ctx = account.span ? trace.setSpan(context.active(), account.span) : context.active();
      const store = { ...current.getStore(), account, call: undefined };
      return current.run(store, () => context.with(ctx, call));
    };
    for (let attempt = 0; ; attempt++) {
      let result: R;
      try {
        result = await run();
      } catch (error) {
        let wait: number | undefined;
        if (policy && account) {
          try {
            const o = classifyError(error);
            const elapsed = Math.max((performance.now() - started) / 1000, account.waited);
            wait = policy.waitBeforeNext(attempt, o, elapsed);
            if (wait !== undefined) {
              account.waited += wait;
              // the attempt's usage is wasted, its failures forgotten
              account.recordRetry(o.reason ?? "exception", {
                statusCode: o.statusCode,
                wait,
                failureClass: o.failureClass,
                rerun: true,
                retryAfter: o.retryAfter,
              });
            }
          } catch (e) {
            swallow("retry", e);
          }
        }
        if (wait === undefined) {
          finish(account, true, error);
          throw error;
        }
        try {
          await policy!.sleep(wait);
        } catch (sleepError) {
          finish(account, true, error);
          throw error;
        }
        continue;
      }
      finish(account, false, undefined, result, validators);
      return result;
    }
  };
}

// ------------------------------------------------------------------ the handle

// (method, call site) pairs warned about: once per call site, and a bounded set.
const warned = new Set<string>();
const WARNED_LIMIT = 1024;

/**
 * A wrong argument to a handle method: ignored, counted as a telemetry error of `stage`, and
 * warned about (a FailsightWarning) once per call site and method; never thrown.
 */
function misuse(account: Account, stage: string, message: string): void {
  try {
    account.state.metrics.countTelemetryError(stage);
    const key = `${stage}\u0000${account.callSite}`;
    if (warned.has(key) || warned.size >= WARNED_LIMIT) return;
    warned.add(key);
    process.emitWarning(`failsight: ${message} (ignored; warned once for ${account.callSite.slice(0, 80)})`, "FailsightWarning");
  } catch {
    // nothing left to report to
  }
}

const TOKEN_OPTIONS = { input: "input", output: "output", reasoning: "reasoning", cachedInput: "cached_input" } as const;
type UsageOptions = { input?: number; output?: number; reasoning?: number; cachedInput?: number };

function isCount(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= 0;
}

function isOptions(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** What is wrong with recordRetry's arguments, or undefined. */
function wrongRetry(reason: unknown, options: unknown): string | undefined {
  if (typeof reason !== "string" || !reason) return `a non-empty string reason, got ${repr(reason)}`;
  if (!isOptions(options)) return `an options object, got ${repr(options)}`;
  const { statusCode, wait } = options;
  if (statusCode !== undefined && !(typeof statusCode === "number" && Number.isInteger(statusCode) && statusCode >= 100 && statusCode < 600)) {
    return `statusCode: undefined or an HTTP status, got ${repr(statusCode)}`;
  }
  if (wait !== undefined && !(typeof wait === "number" && Number.isFinite(wait) && wait >= 0)) {
    return `wait: undefined or seconds >= 0, got ${repr(wait)}`;
  }
  return undefined;
}

/**
 * The handle of one traced scope, for code that talks HTTP itself. Methods never throw: a wrong
 * argument is ignored, counted and warned about once per call site (a FailsightWarning).
 */
export class Generation {
  constructor(private readonly account: Account) {}

  /** Set the model label (e.g. after reading it from a raw request body). */
  setModel(model: string): void {
    if (typeof model !== "string" || !model) return misuse(this.account, "set_model", `setModel() takes a non-empty string, got ${repr(model)}`);
    guard("set_model", () => this.account.setModel(model));
  }

  /** Count one returned choice's finish reason; `content_filter`/`length` fail the scope. */
  recordFinishReason(finishReason: string): void {
    if (typeof finishReason !== "string" || !finishReason) {
      return misuse(this.account, "record_finish_reason", `recordFinishReason() takes a non-empty string, got ${repr(finishReason)}`);
    }
    guard("record_finish_reason", () => {
      const reason = normalizeFinishReason(finishReason) ?? "other";
      this.account.countFinishReasons([reason]);
      if (reason === "content_filter" || reason === "length") this.account.failure = ["soft", reason];
    });
  }

  /**
   * Count tokens reported by one API response: non-negative integers. Any other value is ignored
   * and warned about (the valid ones are counted).
   */
  recordUsage(usage: UsageOptions): void {
    if (!isOptions(usage)) {
      return misuse(this.account, "record_usage", `recordUsage() takes { input, output, reasoning, cachedInput }, got ${repr(usage)}`);
    }
    const wrong = Object.entries(usage)
      .filter(([key, n]) => n !== undefined && n !== null && (!Object.hasOwn(TOKEN_OPTIONS, key) || !isCount(n)))
      .map(([key, n]) => `${key}: ${repr(n)}`);
    if (wrong.length) misuse(this.account, "record_usage", `recordUsage() takes non-negative integers, got ${wrong.join(", ")}`);
    const counted: Usage = {};
    for (const [key, tokenType] of Object.entries(TOKEN_OPTIONS)) {
      const n = usage[key as keyof UsageOptions];
      if (isCount(n)) counted[tokenType] = n;
    }
    if (Object.keys(counted).length === 0) return;
    guard("record_usage", () => this.account.addUsage(counted));
  }

  /** Count one retry of the logical request, with the reason of the attempt that failed. */
  recordRetry(reason: string, options: { statusCode?: number; wait?: number } = {}): void {
    const wrong = wrongRetry(reason, options);
    if (wrong !== undefined) return misuse(this.account, "record_retry", `recordRetry() takes ${wrong}`);
    guard("record_retry", () => this.account.recordRetry(reason, { statusCode: options.statusCode, wait: options.wait }));
  }

  /** Advance this scope's video job (or job `jobId`); a failed or cancelled end fails the scope. */
  recordVideoStatus(status: string, options: { jobId?: string } = {}): void {
    if (typeof status !== "string" || !status.trim()) {
      return misuse(this.account, "record_video_status", `recordVideoStatus() takes a non-empty string, got ${repr(status)}`);
    }
    if (!isOptions(options) || (options.jobId !== undefined && (typeof options.jobId !== "string" || !options.jobId))) {
      const got = isOptions(options) ? `jobId: ${repr(options.jobId)}` : repr(options);
      return misuse(this.account, "record_video_status", `recordVideoStatus() takes { jobId } a non-empty string, got ${got}`);
    }
    guard("record_video_status", () => {
      const normalized = normalizeVideoStatus(status);
      if (normalized !== undefined) this.account.recordVideoStatus(normalized, options.jobId);
    });
  }

  /** Mark the scope failed: `failureClass` is "hard", "soft" or "silent". */
  markFailure(failureClass: "hard" | "soft" | "silent", reason: string): void {
    if (!["hard", "soft", "silent"].includes(failureClass)) {
      return misuse(this.account, "mark_failure", `markFailure() takes "hard", "soft" or "silent", got ${repr(failureClass)}`);
    }
    if (typeof reason !== "string" || !reason) {
      return misuse(this.account, "mark_failure", `markFailure() takes a non-empty string reason, got ${repr(reason)}`);
    }
    guard("mark_failure", () => this.account.markFailure(failureClass, reason));
  }
}

/**
 * The handle of the innermost traced scope running now, or undefined outside any.
 *
 * @example currentGeneration()?.markFailure("soft", "image_filtered");
 */
export function currentGeneration(): Generation | undefined {
  const account = current.getStore()?.account;
  if (!account || account.callSite === "unscoped" && account.parent === undefined && account.span === undefined) return undefined;
  if (!(account.handle instanceof Generation)) account.handle = new Generation(account);
  return account.handle as Generation;
}

export { UNKNOWN };
export type { Span };
