// The `retry` option of tracedGeneration: the same policy as the Python package.
import { checkOptions, repr } from "./repr.js";
import { RETRYABLE_REASONS, type Outcome } from "./taxonomy.js";

const MAX_ATTEMPTS_LIMIT = 100;
const DEADLINE_LIMIT = 86_400;

export interface RetryOptions {
  /** Every attempt counts: 3 means up to 3 calls (default 3, at most 100). */
  maxAttempts?: number;
  /** Seconds after the first attempt past which no re-attempt starts (default 60; null: none). */
  deadline?: number | null;
  /** Reasons to retry, among the retryable ones (default: all of them). */
  retryOn?: Iterable<string>;
  /** Injectable, so tests do not sleep. */
  sleep?: (seconds: number) => Promise<void>;
  jitter?: () => number;
}

/**
 * Re-run a traced function on transient hard failures: `rate_limited`, `server_error`,
 * `bad_gateway`, `unavailable`, `gateway_timeout`, `timeout`, `connection`; never other 4xx.
 * The wait before re-attempt n (0-based) is the server's Retry-After, else `2**n + random()`.
 *
 * @example new RetryPolicy({ maxAttempts: 5, sleep: async () => {} })
 */
export class RetryPolicy {
  readonly maxAttempts: number;
  readonly deadline: number | null;
  readonly retryOn: ReadonlySet<string>;
  readonly sleep: (seconds: number) => Promise<void>;
  readonly jitter: () => number;

  constructor(options: RetryOptions = {}) {
    checkOptions("new RetryPolicy()", options, ["maxAttempts", "deadline", "retryOn", "sleep", "jitter"]);
    const attempts = options.maxAttempts ?? 3;
    if (typeof attempts !== "number" || !Number.isInteger(attempts)) {
      throw new TypeError(`failsight: RetryPolicy maxAttempts must be an integer in 1..${MAX_ATTEMPTS_LIMIT}, got ${repr(attempts)}`);
    }
    if (attempts < 1 || attempts > MAX_ATTEMPTS_LIMIT) {
      throw new RangeError(`failsight: RetryPolicy maxAttempts must be in 1..${MAX_ATTEMPTS_LIMIT}, got ${repr(attempts)}`);
    }
    const deadline = options.deadline === undefined ? 60 : options.deadline;
    if (deadline !== null && typeof deadline !== "number") {
      throw new TypeError(`failsight: RetryPolicy deadline must be seconds in (0, ${DEADLINE_LIMIT}] or null, got ${repr(deadline)}`);
    }
    if (deadline !== null && !(Number.isFinite(deadline) && deadline > 0 && deadline <= DEADLINE_LIMIT)) {
      throw new RangeError(`failsight: RetryPolicy deadline must be seconds in (0, ${DEADLINE_LIMIT}] or null, got ${repr(deadline)}`);
    }
    const given = options.retryOn as unknown;
    if (typeof given === "string") {
      throw new TypeError(`failsight: RetryPolicy retryOn takes a set of reasons, not a string: retryOn: [${repr(given)}]`);
    }
    if (given !== undefined && (given === null || typeof (given as Iterable<unknown>)[Symbol.iterator] !== "function")) {
      throw new TypeError(`failsight: RetryPolicy retryOn takes a set of reasons, got ${repr(given)}`);
    }
    const retryOn = new Set<string>(options.retryOn ?? RETRYABLE_REASONS);
    const unknown = [...retryOn].filter((r) => !RETRYABLE_REASONS.has(r));
    if (unknown.length) {
      throw new RangeError(
        `failsight: RetryPolicy retryOn: ${unknown.map((r) => repr(r)).join(", ")} are not retryable reasons; choose from ${[...RETRYABLE_REASONS].join(", ")}`,
      );
    }
    for (const key of ["sleep", "jitter"] as const) {
      if (options[key] !== undefined && typeof options[key] !== "function") {
        throw new TypeError(`failsight: RetryPolicy ${key} must be a function, got ${repr(options[key])}`);
      }
    }
    this.maxAttempts = attempts;
    this.deadline = deadline;
    this.retryOn = retryOn;
    this.sleep = options.sleep ?? ((seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000)));
    this.jitter = options.jitter ?? Math.random;
  }

  /** `retry` as given to tracedGeneration: nothing, an attempt count, a policy or its options. */
  static coerce(retry: unknown): RetryPolicy | undefined {
    if (retry === undefined || retry === null) return undefined;
    if (retry instanceof RetryPolicy) return retry;
    if (typeof retry === "number") return new RetryPolicy({ maxAttempts: retry });
    if (typeof retry === "object" && [Object.prototype, null].includes(Object.getPrototypeOf(retry))) {
      return new RetryPolicy(retry as RetryOptions);
    }
    const hint = typeof retry === "string" && /^\s*\d+\s*$/.test(retry) ? `; Number(${repr(retry)}) if it is read from the environment` : "";
    throw new TypeError(
      `failsight: tracedGeneration({ retry }) takes an attempt count, a RetryPolicy or its options, got ${repr(retry)}${hint}`,
    );
  }

  /** Seconds to wait before re-attempting after failed attempt `attempt` (0-based), or undefined. */
  waitBeforeNext(attempt: number, o: Outcome, elapsed: number): number | undefined {
    if (o.failureClass !== "hard" || o.reason === undefined || !this.retryOn.has(o.reason)) return undefined;
    if (attempt + 1 >= this.maxAttempts) return undefined;
    const wait = o.retryAfter ?? 2 ** attempt + this.jitter();
    if (this.deadline !== null && elapsed + wait > this.deadline) return undefined;
    return wait;
  }
}
