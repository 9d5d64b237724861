// Validators for silent failures: HTTP 200 and output present, but wrong for the application.
// A validator is any function `(result) => boolean | void`; returning false or throwing marks
// the call `silent` with the validator's reason (its name, sanitised and bounded).

export type Validator = ((result: unknown) => boolean | void | undefined) & { readonly reasonName?: string };

function named(reason: string, check: (result: unknown) => boolean): Validator {
  Object.defineProperty(check, "name", { value: reason });
  return check;
}

/** The text a generation returned: a string, or the first choice/output of an API response. */
export function outputText(result: unknown): string | undefined {
  if (typeof result === "string") return result;
  if (result === null || result === undefined) return "";
  if (typeof result !== "object") return undefined;
  const r = result as Record<string, unknown>;
  if (Array.isArray(r.choices)) {
    const first = r.choices[0] as Record<string, unknown> | undefined;
    if (!first) return "";
    const message = first.message as Record<string, unknown> | undefined;
    const text = message ? message.content : first.text;
    return typeof text === "string" ? text : "";
  }
  return typeof r.output_text === "string" ? r.output_text : undefined;
}

/** Fails (`empty_output`) on empty or whitespace-only output. */
export function nonEmpty(): Validator {
  return named("empty_output", (result) => {
    const text = outputText(result);
    if (text === undefined) return Array.isArray(result) ? result.length > 0 : true;
    return text.trim() !== "";
  });
}

/** Fails (`invalid_json`) when the output is not JSON; `stripFences` allows ```json fences. */
export function jsonOutput(options: { stripFences?: boolean } = {}): Validator {
  return named("invalid_json", (result) => {
    let text = outputText(result);
    if (text === undefined) return true; // already structured
    text = text.trim();
    if (options.stripFences && text.startsWith("```")) text = text.replace(/^`+|`+$/g, "").replace(/^json/, "").trim();
    try {
      JSON.parse(text);
      return true;
    } catch {
      return false;
    }
  });
}

/** Fails (`unexpected_label`) when the trimmed output is not one of `labels`. */
export function oneOf(labels: readonly string[], options: { caseSensitive?: boolean } = {}): Validator {
  if (!labels.length || !labels.every((l) => typeof l === "string")) throw new TypeError("oneOf() takes one or more string labels");
  const cs = options.caseSensitive ?? false;
  const allowed = new Set(cs ? labels : labels.map((l) => l.toLowerCase()));
  return named("unexpected_label", (result) => {
    const text = (outputText(result) ?? "").trim();
    return allowed.has(cs ? text : text.toLowerCase());
  });
}

/** Fails (`too_short`) when the output has fewer than `n` words. */
export function minWords(n: number): Validator {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`minWords(n) takes an integer >= 1, got ${String(n)}`);
  return named("too_short", (result) => (outputText(result) ?? "").split(/\s+/).filter(Boolean).length >= n);
}

// The factories, marked with the call a user most likely meant when passing one uncalled
// (tracedGeneration refuses them). A symbol of the global registry, so that a factory of another
// copy of this package is recognised too.
const FACTORY = Symbol.for("failsight.validatorFactory");
for (const [factory, meant] of [
  [jsonOutput, "jsonOutput()"],
  [nonEmpty, "nonEmpty()"],
  [oneOf, 'oneOf(["label", ...])'],
  [minWords, "minWords(n)"],
] as const) {
  Object.defineProperty(factory, FACTORY, { value: meant });
}
