// Watches the chunks of one stream and gives its outcome at the end, as the Python package's
// stream judge does: pure, like the classifier it reads a final Responses answer with.
import { classifyResult, extractUsage, nonEmpty, worstSoftReason } from "./classify.js";
import { filtersOfChoice, filtersOfPrompt } from "./filters.js";
import {
  asStr,
  failureOfFinishReason,
  field,
  MAX_TEXT,
  normalizeFinishReason,
  outcome,
  type Filter,
  type Outcome,
  type ResultKind,
} from "./taxonomy.js";

const FINAL_EVENTS = new Set(["response.completed", "response.incomplete", "response.failed"]);
const MAX_REASONS = 64;

/** Watches the chunks of one stream and gives its outcome at the end. */
export class StreamJudge {
  firstToken: number | undefined;
  readonly finishReasons: string[] = [];
  private sawContent = false;
  private sawTools = false;
  private sawRefusal = false;
  private usage: unknown;
  private final: Outcome | undefined;
  private readonly filters: Filter[] = [];
  private responseId: string | undefined; // "" once read from a chunk without one
  private responseModel: string | undefined;

  constructor(readonly kind: ResultKind) {}

  chunk(item: unknown): void {
    if (this.kind === "responses") {
      this.event(item);
      return;
    }
    const choices = field(item, "choices");
    if (Array.isArray(choices)) {
      if (this.responseId === undefined && choices.length) {
        // read once, from the first chunk with choices (Azure's first has none, nor the answer's id)
        this.responseId = asStr(field(item, "id")) ?? "";
        const model = field(item, "model");
        if (typeof model === "string" && model) this.responseModel = model.slice(0, MAX_TEXT);
      }
      for (const choice of choices) {
        if (!this.sawContent) this.delta(choice);
        const reason = field(choice, "finish_reason");
        if (reason !== null && reason !== undefined && this.finishReasons.length < MAX_REASONS) {
          const normalized = normalizeFinishReason(reason) ?? "other";
          this.finishReasons.push(normalized);
          if (normalized === "content_filter" && this.filters.length < MAX_REASONS) this.filters.push(...filtersOfChoice(choice));
        }
      }
    }
    if (!Array.isArray(choices) || choices.length === 0) {
      // Azure's first chunk: the prompt's filter results, and no choices
      const prompt = field(item, "prompt_filter_results");
      if (prompt !== undefined && this.filters.length < MAX_REASONS) this.filters.push(...filtersOfPrompt(prompt));
    }
    const usage = field(item, "usage");
    if (usage !== null && usage !== undefined) this.usage = usage;
  }

  private first(): void {
    if (this.firstToken === undefined) this.firstToken = performance.now();
  }

  private delta(choice: unknown): void {
    const delta = field(choice, "delta");
    if (delta === null || delta === undefined) {
      if (field(choice, "text")) {
        this.sawContent = true;
        this.first();
      }
      return;
    }
    if (field(delta, "content")) {
      this.sawContent = true;
      this.first();
    }
    if (nonEmpty(field(delta, "tool_calls")) || field(delta, "function_call")) {
      this.sawTools = true;
      this.first();
    }
    if (field(delta, "refusal")) {
      this.sawRefusal = true;
      this.first();
    }
  }

  private event(event: unknown): void {
    const kind = field(event, "type");
    if (typeof kind !== "string") return;
    if (kind.endsWith(".delta")) this.first();
    else if (FINAL_EVENTS.has(kind)) this.final = classifyResult(field(event, "response"), "responses");
  }

  /** The outcome; `exhausted` when iteration ran out (not closed early): no finish reason then means cut off. */
  outcome(exhausted: boolean): Outcome {
    if (this.kind === "responses") {
      if (this.final) return this.final;
      return exhausted ? outcome("hard", "connection") : outcome();
    }
    const reasons = [...this.finishReasons];
    const usage = extractUsage(this.usage);
    const identity = { responseId: this.responseId || undefined, responseModel: this.responseModel };
    if (reasons.length === 0) {
      return exhausted ? outcome("hard", "connection", { usage, ...identity }) : outcome("none", undefined, { usage, ...identity });
    }
    const found = reasons.map(failureOfFinishReason).filter((r): r is string => r !== undefined);
    if (this.sawRefusal && !this.sawContent) found.push("refusal");
    if (!(this.sawContent || this.sawTools || this.sawRefusal) && reasons.includes("stop")) found.push("empty_content");
    const failure = worstSoftReason(found);
    return outcome(failure ? "soft" : "none", failure, { finishReasons: reasons, usage, filters: [...this.filters], ...identity });
  }
}
