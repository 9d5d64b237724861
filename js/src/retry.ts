// The `retry` option of tracedGeneration: the same policy as the Python package.
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
    const attempts = options.maxAttempts ?? 3;
    if (!Number.isInteger(attempts) || attempts < 1 || attempts > MAX_ATTEMPTS_LIMIT) {
      throw new RangeError(`RetryPolicy.maxAttempts must be an integer in 1..${MAX_ATTEMPTS_LIMIT}, got ${String(attempts)}`);
    }
    const deadline = options.deadline === undefined ? 60 : options.deadline;
    if (deadline !== null && !(Number.isFinite(deadline) && deadline > 0 && deadline <= DEADLINE_LIMIT)) {
      throw new RangeError(`RetryPolicy.deadline must be seconds in (0, ${DEADLINE_LIMIT}] or null, got ${String(deadline)}`);
    }
    if (typeof options.retryOn === "string") throw new TypeError("RetryPolicy.retryOn takes a set of reasons, not a string");
    const retryOn = new Set(options.retryOn ?? RETRYABLE_REASONS);
    const unknown = [...retryOn].filter((r) => !RETRYABLE_REASONS.has(r));
    if (unknown.length) throw new RangeError(`RetryPolicy.retryOn: ${unknown.join(", ")} are not retryable reasons`);
    this.maxAttempts = attempts;
    this.deadline = deadline;
    this.retryOn = retryOn;
    this.sleep = options.sleep ?? ((seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000)));
    this.jitter = options.jitter ?? Math.random;
  }

  static coerce(retry: number | RetryPolicy | RetryOptions | undefined): RetryPolicy | undefined {
    if (retry === undefined || retry instanceof RetryPolicy) return retry;
    if (typeof retry === "number") return new RetryPolicy({ maxAttempts: retry });
    return new RetryPolicy(retry);
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
