// The Prometheus metric set, built against a given registry: the same names, label names,
// label order and buckets as the Python package, so dashboards and alert rules read both.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { CappedMetric, COMMON_LABELS, type Metric } from "./capped.js";
import { STAGES } from "./guard.js";

export const ATTEMPT_BUCKETS = [1, 2, 3, 4, 5, 6, 8, 10];
export const DURATION_BUCKETS = [...Array.from({ length: 14 }, (_, k) => 0.01 * 2 ** k), 163.84, 327.68];
export const TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40];
export const VIDEO_DURATION_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800];

/** Every failsight metric, registered on one registry under one namespace. */
export class MetricSet {
  readonly requests: CappedMetric<Counter<string>>;
  readonly failures: CappedMetric<Counter<string>>;
  readonly finishReasons: CappedMetric<Counter<string>>;
  readonly retries: CappedMetric<Counter<string>>;
  readonly tokens: CappedMetric<Counter<string>>;
  readonly attempts: CappedMetric<Histogram<string>>;
  readonly duration: CappedMetric<Histogram<string>>;
  readonly timeToFirstToken: CappedMetric<Histogram<string>>;
  readonly videoJobs: CappedMetric<Counter<string>>;
  readonly videoJobDuration: CappedMetric<Histogram<string>>;
  readonly inFlight: CappedMetric<Gauge<string>>;
  readonly wastedTokens: CappedMetric<Counter<string>>;
  readonly cost: CappedMetric<Counter<string>>;
  readonly wastedCost: CappedMetric<Counter<string>>;
  readonly contentFilter: CappedMetric<Counter<string>>;
  readonly telemetryErrors: Counter<string>;
  private readonly registered: string[] = [];

  constructor(
    private readonly registry: Registry,
    readonly namespace = "genai",
    maxLabelValues = 100,
  ) {
    const ns = namespace;
    const taken = (name: string) => registry.getSingleMetric(name) !== undefined;
    const names = [
      "requests_total", "failures_total", "finish_reasons_total", "retries_total", "tokens_total",
      "request_attempts", "request_duration_seconds", "time_to_first_token_seconds",
      "video_jobs_total", "video_job_duration_seconds", "in_flight_requests", "telemetry_errors_total",
      "wasted_tokens_total", "cost_usd_total", "wasted_cost_usd_total", "content_filter_total",
    ].map((n) => `${ns}_${n}`);
    const clash = names.find(taken);
    if (clash !== undefined) {
      throw new Error(
        `failsight: the registry already has a metric named '${clash}', so failsight registered none of its ` +
          `metrics there. Remove that metric, or configure({ namespace: "..." }).`,
      );
    }
    this.registered = names;
    const overflow = () => this.telemetryErrors.inc({ stage: "series_budget" });
    const capped = <M extends Metric>(
      make: new (config: never) => M,
      name: string,
      help: string,
      own: readonly string[],
      extra: Record<string, unknown> = {},
    ): CappedMetric<M> => {
      const labelNames = [...COMMON_LABELS, ...own];
      const metric = new make({ name: `${ns}_${name}`, help, labelNames, registers: [registry], ...extra } as never);
      return new CappedMetric(metric, labelNames, maxLabelValues, overflow);
    };
    this.requests = capped(Counter, "requests_total", "Logical generation requests by failure class.", ["failure_class"]);
    this.failures = capped(Counter, "failures_total", "Failed logical requests by class and reason.", ["failure_class", "reason"]);
    this.finishReasons = capped(Counter, "finish_reasons_total", "Choices or outputs returned, by finish reason.", ["finish_reason"]);
    this.retries = capped(Counter, "retries_total", "Retries (SDK-internal and in traced scopes) by the failed reason.", ["reason"]);
    this.tokens = capped(Counter, "tokens_total", "Tokens reported by API responses, every attempt.", ["token_type"]);
    this.attempts = capped(Histogram, "request_attempts", "Attempts per logical request.", [], { buckets: ATTEMPT_BUCKETS });
    this.duration = capped(Histogram, "request_duration_seconds", "Duration of logical requests in seconds.", ["failure_class"], {
      buckets: DURATION_BUCKETS,
      enableExemplars: false,
    });
    this.timeToFirstToken = capped(Histogram, "time_to_first_token_seconds", "Time to the first streamed chunk in seconds.", [], {
      buckets: TTFT_BUCKETS,
    });
    this.videoJobs = capped(Counter, "video_jobs_total", "Video generation jobs reaching an end, by status.", ["status"]);
    this.videoJobDuration = capped(Histogram, "video_job_duration_seconds", "Video job duration from create to its end in seconds.", ["status"], {
      buckets: VIDEO_DURATION_BUCKETS,
    });
    this.inFlight = capped(Gauge, "in_flight_requests", "Generation requests now running.", []);
    this.wastedTokens = capped(Counter, "wasted_tokens_total",
      "Tokens that bought nothing kept: usage of requests ending failed, and of every retried attempt.",
      ["token_type", "failure_class", "reason"]);
    // Registered for the same series names as Python; the Node package prices nothing (yet).
    this.cost = capped(Counter, "cost_usd_total", "Priced usage in US dollars, every attempt.", []);
    this.wastedCost = capped(Counter, "wasted_cost_usd_total", "Priced wasted usage in US dollars.", ["failure_class", "reason"]);
    this.contentFilter = capped(Counter, "content_filter_total",
      "Content-filter categories a provider reported, by stage and severity.", ["category", "stage", "severity"]);
    this.telemetryErrors = new Counter({
      name: `${ns}_telemetry_errors_total`,
      help: "Internal failsight errors swallowed so the caller was not affected, by stage.",
      labelNames: ["stage"],
      registers: [registry],
    });
    for (const stage of STAGES) this.telemetryErrors.inc({ stage }, 0);
  }

  setMaxLabelValues(cap: number): void {
    for (const m of [this.requests, this.failures, this.finishReasons, this.retries, this.tokens, this.attempts,
      this.duration, this.timeToFirstToken, this.videoJobs, this.videoJobDuration, this.inFlight, this.wastedTokens,
      this.cost, this.wastedCost, this.contentFilter]) {
      m.setCap(cap);
    }
  }

  /** Take every metric of this set off its registry again. */
  unregister(): void {
    for (const name of this.registered) this.registry.removeSingleMetric(name);
  }

  countTelemetryError(stage: string): void {
    this.telemetryErrors.inc({ stage: stage.slice(0, 40) });
  }
}
