// The one guard for telemetry steps: what a step throws is counted by stage (through the sink
// config.ts sets) and warned about, rate-limited, with keys masked; never thrown to the caller.
// Imports nothing from failsight but redact and the vocabulary.
import { maskSecrets } from "./redact.js";
import { VOCABULARY } from "./vocabulary.js";

/** The closed vocabulary of `genai_telemetry_errors_total{stage}`: each series starts at 0. */
export const STAGES: readonly string[] = VOCABULARY.guard_stages;

let errorSink: ((stage: string) => void) | undefined;

/** Where swallowed errors are counted: the metric set's telemetry-errors counter (config.ts sets it). */
export function setErrorSink(sink: ((stage: string) => void) | undefined): void {
  errorSink = sink;
}

const lastWarned = new Map<string, number>();

/** A telemetry step failed: counted by stage and warned about (rate-limited), never thrown. */
export function swallow(stage: string, error: unknown): void {
  try {
    errorSink?.(stage);
    const now = Date.now();
    if ((lastWarned.get(stage) ?? 0) + 60_000 < now) {
      lastWarned.set(stage, now);
      const message = error instanceof Error ? error.message : String(error);
      process.emitWarning(`failsight: telemetry step '${stage}' failed: ${maskSecrets(message, 512)}`, "FailsightWarning");
    }
  } catch {
    // nothing left to report to
  }
}

/** Run a telemetry step; what it throws is swallowed. */
export function guard(stage: string, step: () => void): void {
  try {
    step();
  } catch (error) {
    swallow(stage, error);
  }
}
