// Settings, read per call through one cheap state lookup; configure() again replaces them.
import { trace, type Tracer, type TracerProvider } from "@opentelemetry/api";
import { register as globalRegistry, type Registry } from "prom-client";
import { setErrorSink } from "./guard.js";
import { MetricSet } from "./metrics.js";
import { checkOptions, repr } from "./repr.js";
import { VideoJobs } from "./video.js";

export const VERSION = "0.1.0";

export interface ConfigureOptions {
  /** prom-client registry for the metrics (default: prom-client's global `register`). */
  registry?: Registry;
  /** OpenTelemetry tracer provider (default: the global one). */
  tracerProvider?: TracerProvider;
  /** Metric name prefix (default `genai`). */
  namespace?: string;
  /** Distinct values each common label keeps per metric; later ones become `other` (default 100). */
  maxLabelValues?: number;
  /**
   * Judge each chat or Responses answer against what its request declares, with no validator
   * (default true): a call to an undeclared tool, tool arguments that are not JSON or break the
   * tool's `parameters` schema, a `tool_choice` that forced a call that did not come, structured
   * output (`response_format`, `text.format`) that is not JSON or breaks its schema are silent
   * failures, and `genai_tool_calls_total` counts tool calls by tool and outcome. False turns it
   * off; `tracedGeneration({ judgeDeclared })` decides for the calls inside one call site.
   */
  judgeDeclared?: boolean;
}

export interface State {
  registry: Registry;
  metrics: MetricSet;
  tracerProvider: TracerProvider | undefined;
  tracer: Tracer;
  videoJobs: VideoJobs;
  judgeDeclared: boolean;
}

let state: State | undefined;
// Metric sets already registered, per registry and namespace: configure() twice reuses them.
const sets = new WeakMap<Registry, Map<string, MetricSet>>();

// Large enough for any real service, small enough that a typo (an extra zero) fails here.
export const MAX_LABEL_VALUES_LIMIT = 100_000;
const OPTIONS = ["registry", "tracerProvider", "namespace", "maxLabelValues", "judgeDeclared"] as const;

function build(options: ConfigureOptions): State {
  checkOptions("configure()", options, OPTIONS);
  const registry = options.registry ?? globalRegistry;
  if (typeof registry?.registerMetric !== "function" || typeof registry.getSingleMetric !== "function") {
    throw new TypeError(`failsight: configure({ registry }) takes a prom-client Registry, got ${repr(registry)}`);
  }
  if (options.tracerProvider !== undefined && typeof options.tracerProvider?.getTracer !== "function") {
    throw new TypeError(`failsight: configure({ tracerProvider }) takes a TracerProvider (with getTracer()), got ${repr(options.tracerProvider)}`);
  }
  const namespace = options.namespace ?? "genai";
  if (typeof namespace !== "string" || !/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(namespace)) {
    throw new TypeError(`failsight: configure({ namespace }) must match [a-zA-Z_][a-zA-Z0-9_]*, got ${repr(namespace)}`);
  }
  const cap = options.maxLabelValues ?? 100;
  if (typeof cap !== "number" || !Number.isInteger(cap)) {
    throw new TypeError(`failsight: configure({ maxLabelValues }) must be an integer in 1..${MAX_LABEL_VALUES_LIMIT}, got ${repr(cap)}`);
  }
  if (cap < 1 || cap > MAX_LABEL_VALUES_LIMIT) {
    throw new RangeError(`failsight: configure({ maxLabelValues }) must be in 1..${MAX_LABEL_VALUES_LIMIT}, got ${repr(cap)}`);
  }
  const judgeDeclared = options.judgeDeclared ?? true;
  if (typeof judgeDeclared !== "boolean") {
    throw new TypeError(`failsight: configure({ judgeDeclared }) takes true or false, got ${repr(judgeDeclared)}`);
  }
  let byNamespace = sets.get(registry);
  if (!byNamespace) sets.set(registry, (byNamespace = new Map()));
  let metrics = byNamespace.get(namespace);
  if (!metrics) {
    metrics = new MetricSet(registry, namespace, cap);
    byNamespace.set(namespace, metrics);
  } else {
    metrics.setMaxLabelValues(cap);
  }
  const provider = options.tracerProvider;
  const tracer = (provider ?? trace.getTracerProvider()).getTracer("failsight", VERSION);
  const m = metrics;
  const videoJobs = new VideoJobs((labels, status, seconds) => {
    m.videoJobs.metric.inc(m.videoJobs.labels([...labels, status]));
    m.videoJobDuration.metric.observe(m.videoJobDuration.labels([...labels, status]), seconds);
  });
  return { registry, metrics, tracerProvider: provider, tracer, videoJobs, judgeDeclared };
}

/**
 * Where failsight records: optional, with sane defaults. Calling it again replaces the settings.
 * A wrong option (an unknown name, a value of the wrong type or out of range) throws a
 * TypeError or RangeError that names it, before anything changes.
 *
 * @example
 * configure({ registry: new Registry(), namespace: "genai" });
 */
export function configure(options: ConfigureOptions = {}): void {
  state = build(options);
}

export function getState(): State {
  return state ?? (state = build({}));
}

/** Forget the settings (tests): the next call builds the defaults again. */
export function resetConfiguration(): void {
  state = undefined;
}

// Swallowed errors are counted in the metric set of the settings in force (built on first use).
setErrorSink((stage) => getState().metrics.countTelemetryError(stage));
