// Labelled metrics whose label values, and so whose series, are bounded: common labels past
// the cap, reasons outside the closed vocabulary, and series past the budget become `other`.
import type { Counter, Gauge, Histogram } from "prom-client";
import { OTHER, REASONS } from "./taxonomy.js";
import { VOCABULARY } from "./vocabulary.js";

export const COMMON_LABELS: readonly string[] = VOCABULARY.labels.common;
export type CommonLabels = readonly [string, string, string, string];
/** Characters kept of a common label's value. */
export const MAX_LABEL_LENGTH = 128;
/** Distinct common-label tuples a metric keeps series for. */
export const MAX_SERIES = 1000;

export type Metric = Counter<string> | Gauge<string> | Histogram<string>;

/**
 * A labelled metric whose label values are bounded, so its series count is too. The first
 * `capped` labels (the common ones, and a metric's own open label such as `tool`) are capped
 * each and make up the series budget's key.
 */
export class CappedMetric<M extends Metric> {
  private readonly seen: Set<string>[];
  private readonly reasons = new Set<string>();
  private readonly series = new Set<string>();

  constructor(
    readonly metric: M,
    readonly labelNames: readonly string[],
    private cap: number,
    private readonly onOverflow: () => void,
    private readonly capped = COMMON_LABELS.length,
  ) {
    this.seen = Array.from({ length: capped }, () => new Set<string>());
  }

  setCap(cap: number): void {
    this.cap = cap;
  }

  /** Label values (common labels first, then the metric's own), capped. */
  labels(values: readonly string[]): Record<string, string> {
    const n = this.capped;
    const common = values.slice(0, n).map((v) => String(v).slice(0, MAX_LABEL_LENGTH));
    for (let i = 0; i < n; i++) {
      const seen = this.seen[i]!;
      const value = common[i]!;
      if (!seen.has(value)) {
        if (seen.size >= this.cap) common[i] = OTHER;
        else seen.add(value);
      }
    }
    const own = values.slice(n).map((v) => String(v).slice(0, MAX_LABEL_LENGTH));
    const at = this.labelNames.indexOf("reason") - n;
    if (at >= 0 && own[at] !== undefined) {
      const reason = own[at]!;
      // The closed reason vocabulary is never capped; anything else (a validator's name) is.
      if (!REASONS.has(reason) && !this.reasons.has(reason)) {
        if (this.reasons.size >= this.cap) own[at] = OTHER;
        else this.reasons.add(reason);
      }
    }
    const key = common.join("\u0000");
    let admitted = common.every((v) => v === OTHER) || this.series.has(key);
    if (!admitted && this.series.size < MAX_SERIES) {
      this.series.add(key);
      admitted = true;
    }
    if (!admitted) {
      common.fill(OTHER);
      this.onOverflow();
    }
    const all = [...common, ...own];
    const result: Record<string, string> = {};
    this.labelNames.forEach((name, i) => {
      result[name] = all[i] ?? "";
    });
    return result;
  }
}
