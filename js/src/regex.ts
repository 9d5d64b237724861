// Python's regex dialect (`re`, str patterns) as JavaScript regex sources: the vocabulary's
// secret patterns are written in it (vocabulary.json, `secrets.about`), and redact.ts compiles
// them through `translatePattern`, so both packages match the same text. Imports nothing.

// What Python's `(?i:x)` matches for a letter x: its two cases, and for i, k and s a few more.
const FOLDS: Record<string, string> = { i: "iI\u0130\u0131", k: "kK\u212a", s: "sS\u017f" };

/** A regex fragment matching `fragment` in any case, as Python's `(?i:fragment)`; classes kept. */
export function ci(fragment: string): string {
  let out = "";
  let inClass = false;
  for (let i = 0; i < fragment.length; i++) {
    const c = fragment[i]!;
    if (c === "\\") {
      // An escape, kept whole: \d, or a property such as \p{Nd}.
      const end = /^[pP]\{/.test(fragment.slice(i + 1)) ? fragment.indexOf("}", i) : i + 1;
      out += fragment.slice(i, end + 1);
      i = end;
      continue;
    }
    if (inClass || !/[a-zA-Z]/.test(c)) {
      if (c === "[") inClass = true;
      else if (c === "]") inClass = false;
      out += c;
      continue;
    }
    const lower = c.toLowerCase();
    out += `[${FOLDS[lower] ?? lower + c.toUpperCase()}]`;
  }
  return out;
}

/**
 * A regex matching any of `words` (regex fragments) at the start of a word: its first letter in
 * either case, the rest in any case (as Python's `_word`).
 */
export function word(...words: string[]): string {
  const alternatives = words.map((w) => `[${w[0]!.toLowerCase()}${w[0]!.toUpperCase()}]${ci(w.slice(1))}`);
  return `(?<![A-Za-z0-9])(?:${alternatives.join("|")})`;
}

// Python's \s in a str pattern (str.isspace()), its \w (str.isalnum() or "_"), its \d.
export const SPACE_CHARS = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
export const S = `[${SPACE_CHARS}]`;
export const W = "[\\p{L}\\p{N}_]";
export const NOT_W = "[^\\p{L}\\p{N}_]";

// --------------------------------------------------------------------------- translation

/** The end of the group opened at `start` (the index of its ")"), escapes and classes skipped. */
function groupEnd(pattern: string, start: number): number {
  let depth = 0;
  let inClass = false;
  for (let i = start; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\") i++;
    else if (inClass) inClass = c !== "]";
    else if (c === "[") inClass = true;
    else if (c === "(") depth++;
    else if (c === ")" && --depth === 0) return i;
  }
  throw new Error(`failsight: unbalanced group in secret pattern ${JSON.stringify(pattern)}`);
}

/** Whether `fragment` has a `|` outside any group or class. */
function hasTopLevelBar(fragment: string): boolean {
  let depth = 0;
  let inClass = false;
  for (let i = 0; i < fragment.length; i++) {
    const c = fragment[i];
    if (c === "\\") i++;
    else if (inClass) inClass = c !== "]";
    else if (c === "[") inClass = true;
    else if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "|" && depth === 0) return true;
  }
  return false;
}

// Python's escapes as JavaScript (with the u flag) reads them, outside and inside a class.
const ESCAPES: Record<string, string> = { s: S, w: W, W: NOT_W, d: "\\p{Nd}" };
const CLASS_ESCAPES: Record<string, string> = { s: SPACE_CHARS, w: "\\p{L}\\p{N}_", d: "\\p{Nd}" };
const MACRO = /^\{\{(\w+)(?::([^}]*))?\}\}/;

/**
 * A vocabulary pattern (Python's `re` syntax, `secrets.about`) as a JavaScript regex source
 * matching the same text: `(?P<n>` -> `(?<n>`, `(?i:…)` -> `ci`, `\s`, `\w`, `\W`, `\d` and `.`
 * as Python reads them in a str pattern, `{{key}}`/`{{token}}` macros, `{{words:a,b}}` -> `word`.
 * Python syntax without such a translation here (`\b`, `\S`, flags other than `i`) throws.
 *
 * @example translatePattern("(?P<id>\\d+)", {}) // "(?<id>\\p{Nd}+)"
 */
export function translatePattern(pattern: string, macros: Readonly<Record<string, string>>): string {
  let out = "";
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    const rest = pattern.slice(i);
    if (c === "\\") {
      const e = pattern[++i];
      if (e === undefined) throw new Error(`failsight: secret pattern ends in a backslash: ${JSON.stringify(pattern)}`);
      const mapped = (inClass ? CLASS_ESCAPES : ESCAPES)[e];
      if (mapped === undefined && /[A-Za-z]/.test(e) && e !== "n" && e !== "t" && e !== "r") {
        throw new Error(`failsight: no JavaScript translation for \\${e} in secret pattern ${JSON.stringify(pattern)}`);
      }
      out += mapped ?? `\\${e}`;
    } else if (inClass) {
      if (c === "]") inClass = false;
      out += c;
    } else if (c === "[") {
      inClass = true;
      out += c;
      if (pattern[i + 1] === "^") out += pattern[++i];
    } else if (c === ".") {
      out += "[^\\n]";
    } else if (c === "{" && MACRO.test(rest)) {
      const [whole, name, words] = MACRO.exec(rest)!;
      if (name === "words" && words) out += word(...words.split(",").map((w) => translatePattern(w, macros)));
      else if (macros[name!] !== undefined) out += translatePattern(macros[name!]!, macros);
      else throw new Error(`failsight: unknown macro ${whole} in secret pattern ${JSON.stringify(pattern)}`);
      i += whole.length - 1;
    } else if (rest.startsWith("(?P<")) {
      out += "(?<";
      i += 3;
    } else if (rest.startsWith("(?i:")) {
      const end = groupEnd(pattern, i);
      const inner = translatePattern(pattern.slice(i + 4, end), macros);
      if (/\(\?P?</.test(inner.replace(/\(\?<[=!]/g, ""))) {
        throw new Error(`failsight: a named group inside (?i:…) in secret pattern ${JSON.stringify(pattern)}`);
      }
      // A group is kept only where it matters: around alternatives, or before a quantifier.
      const grouped = hasTopLevelBar(inner) || /^[*+?{]/.test(pattern.slice(end + 1));
      out += grouped ? `(?:${ci(inner)})` : ci(inner);
      i = end;
    } else if (/^\(\?[a-zA-Z]/.test(rest)) {
      throw new Error(`failsight: no JavaScript translation for ${rest.slice(0, 4)} in secret pattern ${JSON.stringify(pattern)}`);
    } else {
      out += c;
    }
  }
  return out;
}
