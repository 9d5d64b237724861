// Redaction: keys masked out of any text failsight records or logs, as the Python package's
// _redact.py masks them, rule for rule; tests/conformance/secrets.json holds both to one table.
//
// Two layers, both in `maskSecrets`:
// - exact keys: every key given to `rememberSecret` (the patch passes the API key of each client
//   and request it sees) is masked wherever it appears, whatever its shape;
// - patterns: anything shaped like a credential: provider key prefixes, `Bearer …`, `api_key=…`,
//   header reprs, URL signatures, a long opaque run after a key word.
//
// The patterns are Python's, spelled for JavaScript: Python's `(?i:…)` groups become character
// sets (`ci`), and `\s`, `\w`, `\W`, `\b` are written as Python reads them in a str pattern
// (Unicode), so both packages mask the same text the same way.

export const MASK = "***";

// --------------------------------------------------------------------------- patterns

// What Python's `(?i:x)` matches for a letter x: its two cases, and for i, k and s a few more.
const FOLDS: Record<string, string> = { i: "iI\u0130\u0131", k: "kK\u212a", s: "sS\u017f" };

/** A regex fragment matching `fragment` in any case, as Python's `(?i:fragment)`; classes kept. */
function ci(fragment: string): string {
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
function word(...words: string[]): string {
  const alternatives = words.map((w) => `[${w[0]!.toLowerCase()}${w[0]!.toUpperCase()}]${ci(w.slice(1))}`);
  return `(?<![A-Za-z0-9])(?:${alternatives.join("|")})`;
}

// Python's \s in a str pattern (str.isspace()), its \w (str.isalnum() or "_"), its \d.
const SPACE_CHARS = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const S = `[${SPACE_CHARS}]`;
const W = "[\\p{L}\\p{N}_]";
const NOT_W = "[^\\p{L}\\p{N}_]";

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
 * @example translatePattern("(?P<secret>\\d+)", {}) // "(?<secret>\\p{Nd}+)"
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

const KEY = "[A-Za-z0-9_\\-]"; // a key's characters after its prefix
const TOKEN = "[A-Za-z0-9._~+/=\\-]"; // an HTTP auth token's characters
const KEY_WORDS = ["key", "token", "secret", "passw"] as const;

// Request, trace and span ids are runs of 32 hex too. Alone they are kept (no key word before
// them); labelled as ids right before them they are kept even after a key word.
const ID_LABEL = new RegExp(
  `(?<!${W})${ci("(?:ids?|request|trace(?:parent)?|span|correlation|operation|session|digest|hash|sha\\p{Nd}*|md5|etag|fingerprint)")}` +
    `${NOT_W}{0,3}$`,
  "u",
);

function notAnId(groups: Record<string, string | undefined>): boolean {
  return !ID_LABEL.test(groups.gap ?? "");
}

/** Whether `text` has a run of 32 letters or digits: such a run holds an aligned block of 16. */
function hasLongRun(text: string): boolean {
  for (let i = 0; i + 16 <= text.length; i += 16) {
    if (LONG_BLOCK.test(text.slice(i, i + 16))) return true;
  }
  return false;
}
const LONG_BLOCK = /^[\p{L}\p{N}]{16}$/u;

interface Rule {
  /** Substrings one of which every match holds (lower-cased, unless it has capitals). */
  triggers: readonly string[];
  pattern: RegExp;
  accept?: (groups: Record<string, string | undefined>) => boolean;
  precheck?: (text: string) => boolean;
}

function rule(triggers: readonly string[], pattern: string, accept?: Rule["accept"], precheck?: Rule["precheck"]): Rule {
  return { triggers, pattern: new RegExp(pattern, "dgu"), accept, precheck };
}

// Each match's `secret` group is masked. Every rule reads the original text, so no rule can hide
// another's match (a prefix glued before a key word: "pk-Bearer …").
const RULES: readonly Rule[] = [
  rule(["bearer"], `[bB]${ci("earer")}${S}+(?<secret>(?:${ci("bearer")}${S}+)*${TOKEN}{4,})`),
  rule(["basic"], `${word("basic")}${S}+(?<secret>${TOKEN}{4,})`),
  // OpenAI, Anthropic (sk-ant-), OpenRouter (sk-or-), DeepSeek, Cerebras (csk-).
  rule(["k-"], `[psr](?<!${W}[^\\n])k-(?<secret>${KEY}{6,})`),
  // Glued to a preceding word (e.g. after an escape in a repr): only key-length runs.
  rule(["k-"], `[psr]k-(?<secret>${KEY}{20,})`),
  // A key the provider echoed half-masked ("sk-proj-AbC1****Q7vZ"): its head and tail still identify it.
  rule(["k-"], `[psr]k-(?<secret>${KEY}*\\*{3,}${KEY}*)`),
  rule(["xai-", "pplx-"], "(?:xai|pplx)-(?<secret>[A-Za-z0-9]{20,})"), // xAI, Perplexity
  rule(["github"], "github_pat_(?<secret>[A-Za-z0-9_]{20,})"), // GitHub fine-grained
  // Groq, Hugging Face, GitHub (personal, OAuth, user, server, refresh), Replicate.
  rule(["k_", "hf_", "gh", "r8_"], "(?:gsk|hf|gh[pousr]|r8)_(?<secret>[A-Za-z0-9]{20,})"),
  rule(["k_"], "[sr]k_(?:live|test)_(?<secret>[A-Za-z0-9]{10,})"), // Stripe
  rule(["AKIA", "ASIA"], "A(?:KIA|SIA)(?<secret>[A-Z0-9]{16})"), // AWS access key ids
  rule(["AIza"], `AIza(?<secret>${KEY}{20,})`), // Google API keys
  rule(["ya29."], `ya29\\.(?<secret>${KEY}{20,})`), // Google OAuth access tokens
  // JWTs (and JWEs): a base64url JSON header, then two to four more parts.
  rule(["eyJ"], `eyJ(?<secret>${KEY}{10,}\\.${KEY}{10,}(?:\\.${KEY}*){1,3})`),
  // Microsoft's annotated keys (newer Azure AI keys): 84 characters, "JQQJ9" at 52.
  rule(["JQQJ9"], "(?<secret>[A-Za-z0-9]{52}JQQJ9[9DH][A-Za-z0-9]{26}(?:[A-Za-z0-9]{2}==)?)", undefined, hasLongRun),
  // Raw header tuples in a repr: (b'api-key', b'…'), ('x-api-key', '…').
  rule(
    KEY_WORDS,
    `\\(${S}*b?["'][A-Za-z0-9_\\-]*?${ci("(?:key|token|secret|passw(?:or)?d)")}["']` +
      `${S}*,${S}*b?["'](?<secret>[^"']{4,})`,
  ),
  // name=value, name: value, 'name': b'value' (headers, JSON, connection strings).
  rule(
    KEY_WORDS,
    word("api[_-]?key", "access[_-]?token", "accountkey", "token", "secret", "sharedaccesskey", "passw(?:or)?d", "key") +
      `["']?${S}*[=:]${S}*(?:b?["'])?(?<secret>[^${SPACE_CHARS}"'&,;]{4,})`,
  ),
  // URL query secrets: Azure Functions `code`, SAS `sig`, presigned URLs' signatures.
  rule(
    ["sig", "code=", "key", "token"],
    `[?&]${ci("(?:sig|code|(?:x-(?:amz|goog)-)?(?:signature|security-token)|key|api[_-]?key|access_token|token)")}` +
      `=(?<secret>[^&#${SPACE_CHARS}"'<>;]{3,})`,
  ),
  // A run of 32+ letters and digits a few words after a key word, unless labelled as an id:
  // Azure keys are 32 hex (newer ones 84 characters), Together's 64 hex, Mistral's 32
  // alphanumerics, none with a prefix to find them by.
  rule(
    KEY_WORDS,
    word("api[_-]?key", "key", "secret", "token", "passw(?:or)?d") +
      `${ci("s")}?(?![A-Za-z0-9_])(?<gap>[^\\n]{0,48}?)(?<![A-Za-z0-9_\\-])(?<secret>[A-Za-z0-9]{32,})`,
    notAnId,
    hasLongRun,
  ),
];

function triggered(rule: Rule, text: string, lowered: string): boolean {
  return rule.triggers.some((t) => (t === t.toLowerCase() ? lowered : text).includes(t));
}

// --------------------------------------------------------------------------- exact keys

const MAX_REMEMBERED = 64;
const MIN_SECRET_LENGTH = 8; // shorter values ("EMPTY", "sk-test") would mask common words
const MAX_SECRET_LENGTH = 4096;

/** A snapshot, replaced whole. */
interface Remembered {
  keys: readonly string[]; // as given, oldest first
  forms: readonly string[]; // every spelling of every key, longest first
  longest: number; // in code points
}

let remembered: Remembered = { keys: [], forms: [], longest: 0 };

const SURROGATE = /[\uD800-\uDFFF]/;

/** Length in code points, as Python counts a str. */
function len(text: string): number {
  if (!SURROGATE.test(text)) return text.length;
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** The first `n` code points of `text`. */
function head(text: string, n: number): string {
  if (text.length <= n) return text;
  if (!SURROGATE.test(text)) return text.slice(0, n);
  let end = 0;
  let count = 0;
  for (const c of text) {
    if (count++ === n) break;
    end += c.length;
  }
  return text.slice(0, end);
}

const PY_SPACE = new RegExp(`^${S}+|${S}+$`, "gu");

function hex(code: number, width: number): string {
  return code.toString(16).padStart(width, "0");
}

const encoder = new TextEncoder();
const LONE_SURROGATE = /\p{Cs}/u; // with the u flag, a pair is one code point: only a lone half matches

/** UTF-8 bytes of `text`; undefined for a lone surrogate (Python's encode() raises). */
function utf8(text: string): Uint8Array | undefined {
  return LONE_SURROGATE.test(text) ? undefined : encoder.encode(text);
}

/** Python's repr(text.encode())[2:-1]: the key inside a bytes repr, b'…'. */
function bytesRepr(text: string): string | undefined {
  const bytes = utf8(text);
  if (!bytes) return undefined;
  const quote = bytes.includes(0x27) && !bytes.includes(0x22) ? 0x22 : 0x27;
  let out = "";
  for (const b of bytes) {
    if (b === quote || b === 0x5c) out += `\\${String.fromCharCode(b)}`;
    else if (b === 0x09) out += "\\t";
    else if (b === 0x0a) out += "\\n";
    else if (b === 0x0d) out += "\\r";
    else if (b < 0x20 || b >= 0x7f) out += `\\x${hex(b, 2)}`;
    else out += String.fromCharCode(b);
  }
  return out;
}

const UNPRINTABLE = /^[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]$/u;

/** Python's repr(text)[1:-1]. */
function strRepr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = "";
  for (const c of text) {
    const code = c.codePointAt(0)!;
    if (c === quote || c === "\\") out += `\\${c}`;
    else if (c === "\t") out += "\\t";
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c !== " " && UNPRINTABLE.test(c)) {
      out += code < 0x100 ? `\\x${hex(code, 2)}` : code < 0x10000 ? `\\u${hex(code, 4)}` : `\\U${hex(code, 8)}`;
    } else out += c;
  }
  return out;
}

const JSON_ESCAPES: Record<string, string> = { '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f" };

/** Python's json.dumps(text)[1:-1]: every character outside space..~ escaped. */
function asciiJson(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    const code = c.charCodeAt(0);
    out += JSON_ESCAPES[c] ?? (code < 0x20 || code > 0x7e ? `\\u${hex(code, 4)}` : c);
  }
  return out;
}

/** Python's urllib.parse.quote(text, safe). */
function quote(text: string, safe: string): string | undefined {
  const bytes = utf8(text);
  if (!bytes) return undefined;
  let out = "";
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9_.\-~]/.test(c) || (b < 0x80 && safe.includes(c)) ? c : `%${hex(b, 2).toUpperCase()}`;
  }
  return out;
}

// The spellings of a key in text: in a bytes or str repr, JSON (Python's and Node's), a URL.
const SPELLINGS: readonly ((text: string) => string | undefined)[] = [
  bytesRepr,
  strRepr,
  asciiJson,
  (text) => JSON.stringify(text).slice(1, -1),
  (text) => quote(text, ""),
  (text) => quote(text, "/"), // in a URL path
];

function formsOf(key: string): Set<string> {
  const forms = new Set([key]);
  const space = key.indexOf(" ");
  if (space >= 0) {
    const scheme = key.slice(0, space).toLowerCase();
    const token = key.slice(space + 1).replace(PY_SPACE, "");
    // A header value: the credential alone is masked too.
    if ((scheme === "bearer" || scheme === "basic") && len(token) >= MIN_SECRET_LENGTH) forms.add(token);
  }
  for (const form of [...forms]) {
    for (const spell of SPELLINGS) {
      const spelled = spell(form);
      if (spelled) forms.add(spelled);
    }
  }
  return forms;
}

function snapshot(keys: readonly string[]): Remembered {
  const forms = [...new Set(keys.flatMap((key) => [...formsOf(key)]))].sort((a, b) => len(b) - len(a));
  return { keys, forms, longest: forms.length ? len(forms[0]!) : 0 };
}

/**
 * Mask `value` wherever it appears in any later `maskSecrets` text, pattern or not: for the API
 * key of each client failsight sees (or an `Authorization`/`api-key` header value). Its repr,
 * JSON and URL-encoded spellings are masked too. At most 64 keys are kept, the oldest dropped
 * (one seen again is kept); values shorter than 8 characters, and anything not a string, are
 * ignored. Cheap for a key already remembered.
 *
 * @example rememberSecret("a1b2c3d4e5f6"); maskSecrets("denied for a1b2c3d4e5f6") // "denied for ***"
 */
export function rememberSecret(value: unknown): void {
  if (typeof value !== "string") return;
  const size = len(value);
  if (size < MIN_SECRET_LENGTH || size > MAX_SECRET_LENGTH) return;
  const keys = remembered.keys;
  const at = keys.indexOf(value);
  // Known, and in no danger of being dropped soon: nothing to do.
  if (at >= 0 && (keys.length < MAX_REMEMBERED || at >= Math.floor(keys.length / 2))) return;
  const kept = keys.filter((key) => key !== value);
  remembered = snapshot([...kept.slice(-(MAX_REMEMBERED - 1)), value]);
}

/** Forget `values`, or every remembered key (tests). */
export function forgetSecrets(...values: string[]): void {
  remembered = snapshot(values.length ? remembered.keys.filter((key) => !values.includes(key)) : []);
}

/**
 * `text` with every remembered key masked (any spelling); no pattern is applied. For the short
 * values a server sends back and failsight records as they are (a response's model or id): a key
 * echoed there is masked, and a model name is never mistaken for a key.
 *
 * @example rememberSecret("a1b2c3d4e5f6"); maskRemembered("chatcmpl-a1b2c3d4e5f6") // "chatcmpl-***"
 */
export function maskRemembered(text: string): string {
  const forms = remembered.forms;
  for (const form of forms) if (text.includes(form)) return replaceRemembered(text, forms);
  return text;
}

function replaceRemembered(text: string, forms: readonly string[]): string {
  // Until none is left: masking one occurrence can join two pieces into another.
  while (forms.some((form) => text.includes(form))) {
    for (const form of forms) text = text.replaceAll(form, MASK); // longest first: a key holding another is masked whole
  }
  return text;
}

// --------------------------------------------------------------------------- masking

function maskAll(text: string, forms: readonly string[]): string {
  const spans: [number, number][] = [];
  for (const form of forms) {
    for (let start = text.indexOf(form); start >= 0; start = text.indexOf(form, start + form.length)) {
      spans.push([start, start + form.length]);
    }
  }
  const lowered = text.toLowerCase();
  for (const r of RULES) {
    if (!triggered(r, text, lowered) || (r.precheck && !r.precheck(text))) continue;
    for (const match of text.matchAll(r.pattern)) {
      const span = match.indices?.groups?.secret;
      if (span && (!r.accept || r.accept(match.groups ?? {}))) spans.push([span[0], span[1]]);
    }
  }
  if (!spans.length) return text;
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let out = "";
  let done = 0; // text.slice(0, done) is written
  let [start, end] = spans[0]!;
  for (const [nextStart, nextEnd] of spans.slice(1)) {
    if (nextStart <= end) {
      end = Math.max(end, nextEnd); // overlapping or touching: one mask
      continue;
    }
    out += text.slice(done, start) + MASK;
    [done, start, end] = [end, nextStart, nextEnd];
  }
  out += text.slice(done, start) + MASK + text.slice(end);
  return forms.length ? replaceRemembered(out, forms) : out;
}

// Characters past `limit` read so that a key cut by the truncation is still masked whole.
const MASK_LOOKAHEAD = 256;

/**
 * Mask every remembered key and anything that looks like a credential, then truncate to `limit`
 * characters (plus "…"). Masking comes first, so a key straddling the limit leaks no prefix.
 *
 * @example maskSecrets("Incorrect API key provided: sk-abc123def456") // "Incorrect API key provided: sk-***"
 */
export function maskSecrets(text: string, limit = 1024): string {
  const state = remembered;
  const forms = state.forms;
  if (len(text) <= limit) return maskAll(text, forms); // a mask is never longer than what it hides
  // A remembered key cut by the window leaves at most its `longest - 1` first characters.
  const reach = Math.max(MASK_LOOKAHEAD / 2, state.longest);
  let window = limit + MASK_LOOKAHEAD + state.longest;
  let masked: string;
  for (;;) {
    masked = maskAll(head(text, window), forms);
    // Done when the whole text was read, or when whatever the window cut (an unmasked key
    // prefix at most) is still past the limit after masking shortened the text.
    if (window >= len(text) || len(masked) >= limit + reach) break;
    window *= 4;
  }
  if (len(masked) > limit) {
    masked = `${head(masked, limit)}…`;
    if (forms.length) masked = replaceRemembered(masked, forms); // a key ending in "…" could be rebuilt by the cut
  }
  return masked;
}

/** A label-safe reason from a validator's name: lower snake case, bounded (as in Python). */
export function sanitizeReason(name: string, limit = 40): string {
  let out = "";
  let lastUnderscore = true;
  for (const char of name.toLowerCase().slice(0, limit * 2)) {
    if (/^[a-z0-9_]$/.test(char)) {
      out += char;
      lastUnderscore = char === "_";
    } else if (!lastUnderscore) {
      out += "_";
      lastUnderscore = true;
    }
  }
  return out.replace(/^_+|_+$/g, "").slice(0, limit) || "validator";
}

// TEMPORARY (removed in the next commit): the hand-written sources, for the equivalence test.
export const HAND_WRITTEN_SOURCES = RULES.map((r) => r.pattern.source);
export const HAND_WRITTEN_ID_LABEL = ID_LABEL.source;
export const HAND_WRITTEN_REST = RULES.map((r) => [[...r.triggers], r.accept?.name, r.precheck?.name]);
