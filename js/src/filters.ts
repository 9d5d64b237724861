// Why a content filter fired, when the provider says: [category, stage, severity] triples.
//
// Azure OpenAI annotates answers with `prompt_filter_results` (stage `prompt`) and each
// choice's `content_filter_results` (stage `completion`); its 400 `content_filter` error
// carries the prompt's results in `innererror.content_filter_result`. Gateways in front of
// Gemini pass its finish reasons through (`SAFETY`, `RECITATION`, ...). Only filtered
// categories count, normalised to the vocabulary's closed list (`filters`), as the Python package does.
import { field, GEMINI_FILTER_REASONS, type Filter } from "./taxonomy.js";
import { VOCABULARY } from "./vocabulary.js";

export type { Filter };

const FILTERS = VOCABULARY.filters;
const CATEGORIES: ReadonlySet<string> = new Set(FILTERS.categories);
const SEVERITIES: ReadonlySet<string> = new Set(FILTERS.severities);
const ALIASES = FILTERS.aliases;
const MAX = 32; // categories read per results object

export function categoryOf(name: unknown): string {
  if (typeof name !== "string") return "other";
  let key = name.trim().toLowerCase().slice(0, 64);
  key = ALIASES[key] ?? key;
  return CATEGORIES.has(key) ? key : "other";
}

function severityOf(value: unknown): string {
  if (typeof value === "string") {
    const key = value.trim().toLowerCase().slice(0, 16);
    if (SEVERITIES.has(key)) return key;
  }
  return "unknown";
}

function filtered(results: unknown, stage: string, out: Filter[]): void {
  if (results === null || typeof results !== "object" || Array.isArray(results)) return;
  let n = 0;
  for (const [name, entry] of Object.entries(results as Record<string, unknown>)) {
    if (n++ >= MAX) break;
    if (Array.isArray(entry)) {
      if (entry.slice(0, MAX).some((item) => field(item, "filtered") === true)) out.push([categoryOf(name), stage, "unknown"]);
      continue;
    }
    if (field(entry, "filtered") === true) out.push([categoryOf(name), stage, severityOf(field(entry, "severity"))]);
  }
}

/** A Gemini finish reason passed through by a gateway, as its category. */
export function filterOfFinishReason(reason: unknown): Filter | undefined {
  if (typeof reason !== "string") return undefined;
  const category = GEMINI_FILTER_REASONS[reason.trim().toLowerCase().slice(0, 32)];
  return category === undefined ? undefined : [category, "completion", "unknown"];
}

/** A choice's (or a stream chunk's choice's) filtered completion categories. */
export function filtersOfChoice(choice: unknown): Filter[] {
  const out: Filter[] = [];
  filtered(field(choice, "content_filter_results"), "completion", out);
  const gemini = filterOfFinishReason(field(choice, "finish_reason"));
  if (gemini !== undefined && out.length === 0) out.push(gemini);
  return out;
}

/** `prompt_filter_results`: a list of {prompt_index, content_filter_results}. */
export function filtersOfPrompt(results: unknown): Filter[] {
  const out: Filter[] = [];
  if (Array.isArray(results)) for (const item of results.slice(0, MAX)) filtered(field(item, "content_filter_results"), "prompt", out);
  return out;
}

/** Every filtered category of a chat or completions answer. */
export function filtersOfResponse(response: unknown): Filter[] {
  const out = filtersOfPrompt(field(response, "prompt_filter_results"));
  const choices = field(response, "choices");
  if (Array.isArray(choices)) for (const choice of choices.slice(0, MAX)) out.push(...filtersOfChoice(choice));
  return out;
}

/** Azure's 400 `content_filter` error: the body's `error` object (or the body itself). */
export function filtersOfError(error: unknown): Filter[] {
  const inner = field(field(error, "error") ?? error, "innererror");
  const out: Filter[] = [];
  filtered(field(inner, "content_filter_result"), "prompt", out);
  filtered(field(inner, "content_filter_results"), "prompt", out);
  if (out.length === 0) out.push(...filtersOfPrompt(field(field(error, "error") ?? error, "prompt_filter_results")));
  return out;
}
