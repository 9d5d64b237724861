// Redaction: keys masked out of any text failsight records or logs, as the Python package's
// _redact.py masks them, rule for rule; the vocabulary's `secrets.cases` hold both to one table.
//
// Two layers, both in `maskSecrets`:
// - exact keys: every key given to `rememberSecret` (the patch passes the API key of each client
//   and request it sees) is masked wherever it appears, whatever its shape;
// - patterns: anything shaped like a credential: provider key prefixes, `Bearer …`, `api_key=…`,
//   header reprs, URL signatures, a long opaque run after a key word.
//
// The patterns are the vocabulary's (`secrets` in vocabulary.json), written in Python's regex
// syntax; `translatePattern` spells them for JavaScript: Python's `(?i:…)` groups become character
// sets (`ci`), and `\s`, `\w`, `\W`, `\d`, `.` are written as Python reads them in a str pattern
// (Unicode), so both packages mask the same text the same way.
import { S, translatePattern } from "./regex.js";
import { VOCABULARY, type SecretRule } from "./vocabulary.js";

const SECRETS = VOCABULARY.secrets;
export const MASK = SECRETS.mask;

// --------------------------------------------------------------------------- patterns

// Request, trace and span ids are runs of 32 hex too. Alone they are kept (no key word before
// them); labelled as ids right before them they are kept even after a key word.
const ID_LABEL = new RegExp(translatePattern(SECRETS.id_label, SECRETS.macros), "u");

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
  id: string;
  /** Substrings one of which every match holds (lower-cased, unless it has capitals). */
  triggers: readonly string[];
  pattern: RegExp;
  accept?: (groups: Record<string, string | undefined>) => boolean;
  precheck?: (text: string) => boolean;
}

const ACCEPT: Readonly<Record<string, Rule["accept"]>> = { not_an_id: notAnId };
const PRECHECK: Readonly<Record<string, Rule["precheck"]>> = { long_run: hasLongRun };

function rule(entry: SecretRule): Rule {
  const accept = entry.accept === undefined ? undefined : ACCEPT[entry.accept];
  const precheck = entry.precheck === undefined ? undefined : PRECHECK[entry.precheck];
  if ((entry.accept !== undefined && !accept) || (entry.precheck !== undefined && !precheck)) {
    throw new Error(`failsight: secret rule '${entry.id}' names an accept or precheck this package does not know`);
  }
  const pattern = new RegExp(translatePattern(entry.pattern, SECRETS.macros), "dgu");
  return { id: entry.id, triggers: entry.triggers, pattern, accept, precheck };
}

// Each match's `secret` group is masked. Every rule reads the original text, so no rule can hide
// another's match (a prefix glued before a key word: "pk-Bearer …"). A rule runs only when the
// text has one of its triggers (lower-cased, unless it has capitals) and its precheck passes.
const RULES: readonly Rule[] = SECRETS.rules.map(rule);

function triggered(rule: Rule, text: string, lowered: string): boolean {
  return rule.triggers.some((t) => (t === t.toLowerCase() ? lowered : text).includes(t));
}

/**
 * Ids of the vocabulary's secret rules that find a secret in `text`, triggers aside (tests, docs).
 *
 * @example ruleIdsMatching("Authorization: Bearer abc.DEF-ghi_123") // ["bearer"]
 */
export function ruleIdsMatching(text: string): string[] {
  return RULES.filter(
    (r) => (!r.precheck || r.precheck(text)) && [...text.matchAll(r.pattern)].some((m) => !r.accept || r.accept(m.groups ?? {})),
  ).map((r) => r.id);
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

