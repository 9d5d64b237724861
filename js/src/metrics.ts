// The Prometheus metric set, built against a given registry: the same names, label names,
// label order and buckets as the Python package, so dashboards and alert rules read both.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { CappedMetric, COMMON_LABELS, type Metric } from "./capped.js";
import { STAGES } from "./guard.js";
import { VOCABULARY } from "./vocabulary.js";

// The metric table (name, type, help, own labels, buckets) is the vocabulary's `metrics`.
const MAKERS = { counter: Counter, gauge: Gauge, histogram: Histogram } as const;
// Own labels capped like the common ones (and part of the series budget), as in Python:
// `tool` holds the names a request declared, so it is as open as a model name.
const OWN_CAPPED: Readonly<Record<string, number>> = { tool_calls_total: 1 };

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
  readonly toolCalls: CappedMetric<Counter<string>>;
  readonly attemptCount: CappedMetric<Counter<string>>;
  readonly backoff: CappedMetric<Histogram<string>>;
  readonly phases: CappedMetric<Histogram<string>>;
  /** Headroom gauges: one series per provider and model (both capped) and resource, not per call site. */
  readonly ratelimitRemaining: CappedMetric<Gauge<string>>;
  readonly ratelimitLimit: CappedMetric<Gauge<string>>;
  readonly ratelimitReset: CappedMetric<Gauge<string>>;
  readonly telemetryErrors: Counter<string>;
  private readonly registered: string[] = [];
  /** Every metric with capped labels (the common ones, or those it leads with), by its name in the vocabulary. */
  private readonly capped = new Map<string, CappedMetric<Metric>>();

  constructor(
    private readonly registry: Registry,
    readonly namespace = "genai",
    maxLabelValues = 100,
  ) {
    const ns = namespace;
    const taken = (name: string) => registry.getSingleMetric(name) !== undefined;
    const names = VOCABULARY.metrics.map((entry) => `${ns}_${entry.name}`);
    const clash = names.find(taken);
    if (clash !== undefined) {
      throw new Error(
        `failsight: the registry already has a metric named '${clash}', so failsight registered none of its ` +
          `metrics there. Remove that metric, or configure({ namespace: "..." }).`,
      );
    }
    this.registered = names;
    const overflow = () => this.telemetryErrors.inc({ stage: "series_budget" });
    const made = new Map<string, Metric>();
    for (const entry of VOCABULARY.metrics) {
      const labelNames = entry.common_labels ? [...COMMON_LABELS, ...entry.labels] : [...entry.labels];
      const config = { name: `${ns}_${entry.name}`, help: entry.help, labelNames, registers: [registry] };
      const buckets = entry.buckets === undefined ? {} : { buckets: [...entry.buckets] };
      const metric: Metric = new MAKERS[entry.type]({ ...config, ...buckets } as never);
      made.set(entry.name, metric);
      // Without the common labels, a metric leads with those of them it caps (the headroom gauges).
      let leading = 0;
      while (leading < entry.labels.length && COMMON_LABELS.includes(entry.labels[leading]!)) leading++;
      const capped = entry.common_labels ? COMMON_LABELS.length + (OWN_CAPPED[entry.name] ?? 0) : leading;
      if (capped > 0) this.capped.set(entry.name, new CappedMetric(metric, labelNames, maxLabelValues, overflow, capped));
    }
    const capped = <M extends Metric>(name: string): CappedMetric<M> => {
      const found = this.capped.get(name);
      if (found === undefined) throw new Error(`failsight: the vocabulary has no labelled metric '${name}'`);
      return found as CappedMetric<M>;
    };
    this.requests = capped("requests_total");
    this.failures = capped("failures_total");
    this.finishReasons = capped("finish_reasons_total");
    this.retries = capped("retries_total");
    this.tokens = capped("tokens_total");
    this.attempts = capped("request_attempts");
    this.duration = capped("request_duration_seconds");
    this.timeToFirstToken = capped("time_to_first_token_seconds");
    this.videoJobs = capped("video_jobs_total");
    this.videoJobDuration = capped("video_job_duration_seconds");
    this.inFlight = capped("in_flight_requests");
    this.wastedTokens = capped("wasted_tokens_total");
    // Registered for the same series names as Python; the Node package prices nothing (yet).
    this.cost = capped("cost_usd_total");
    this.wastedCost = capped("wasted_cost_usd_total");
    this.contentFilter = capped("content_filter_total");
    this.toolCalls = capped("tool_calls_total");
    this.attemptCount = capped("attempts_total");
    this.backoff = capped("retry_backoff_seconds");
    this.phases = capped("request_phase_seconds");
    this.ratelimitRemaining = capped("ratelimit_remaining");
    this.ratelimitLimit = capped("ratelimit_limit");
    this.ratelimitReset = capped("ratelimit_reset_seconds");
    const errors = made.get("telemetry_errors_total");
    if (!(errors instanceof Counter)) throw new Error("failsight: the vocabulary has no counter 'telemetry_errors_total'");
    this.telemetryErrors = errors;
    for (const stage of STAGES) this.telemetryErrors.inc({ stage }, 0);
  }

  setMaxLabelValues(cap: number): void {
    for (const m of this.capped.values()) m.setCap(cap);
  }

  /** Take every metric of this set off its registry again. */
  unregister(): void {
    for (const name of this.registered) this.registry.removeSingleMetric(name);
  }

  countTelemetryError(stage: string): void {
    this.telemetryErrors.inc({ stage: stage.slice(0, 40) });
  }
}
