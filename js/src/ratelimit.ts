// Rate-limit headers of an API answer: the budget left per resource, its size, when it resets,
// and the wait a `Retry-After` asks for (the Python package's _ratelimit; docs/reference.md,
// "Rate-limit headroom"). Pure: headers in (a fetch `Headers`, a Map, [name, value] pairs or a
// plain object), a Reading out, nothing recorded. The header spellings and their precedence are
// the vocabulary's (`ratelimit`). A value that does not parse is left out and named in
// `Reading.malformed`.
import { VOCABULARY } from "./vocabulary.js";

const SPEC = VOCABULARY.ratelimit;
type Names = readonly [limit: string, remaining: string, reset: string];
// resource -> its tiers -> header sets, in order of precedence
const TIERS: readonly (readonly [string, readonly Names[]])[] = Object.entries(SPEC.resources).flatMap(([resource, tiers]) =>
  tiers.map((tier) => [resource, tier.map((s): Names => [s.limit, s.remaining, s.reset])] as const),
);
const RETRY_AFTER: readonly (readonly [string, number])[] = Object.entries(SPEC.retry_after);
const NAMES: ReadonlySet<string> = new Set([...TIERS.flatMap(([, sets]) => sets.flat()), ...RETRY_AFTER.map(([name]) => name)]);

// Go durations as OpenAI sends them (`6m0s`, `1.5s`, `20ms`, `1h2m3.5s`).
const DURATION = /^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/;
const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g;
const UNITS: Readonly<Record<string, number>> = { ns: 1e-9, us: 1e-6, "µs": 1e-6, "μs": 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
const NUMBER = /^(?:\d+(?:\.\d*)?|\.\d+)$/;
const COUNT = /^[+-]?\d+(?:_\d+)*$/; // what Python's int() reads (ASCII digits)
const MAX_VALUE = 64; // characters of a value worth reading
const CACHED = 256; // durations remembered (not dates: they depend on the time now)
const durations = new Map<string, number>();

// RFC 3339 (and the ISO 8601 forms Python's fromisoformat reads): a missing offset is UTC.
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;
// HTTP dates: IMF-fixdate and RFC 850 (`Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 ...`).
const HTTP_DATE = /^(?:[a-z]+,?\s+)?(\d{1,2})[\s-]+([a-z]{3})[a-z]*[\s-]+(\d{2,4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s+(gmt|utc|ut|z|[+-]\d{4}))?$/i;
// asctime: `Sun Nov  6 08:49:37 1994`
const ASCTIME = /^[a-z]+\s+([a-z]{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})\s+(\d{4})$/i;
const MONTHS = "janfebmaraprmayjunjulaugsepoctnovdec";

/** One resource's figures as an answer reported them; undefined where not (or not readable). */
export interface Figures {
  readonly resource: string;
  readonly limit: number | undefined;
  readonly remaining: number | undefined;
  /** Seconds from the answer until the budget is full again. */
  readonly reset: number | undefined;
}

/** What an answer's rate-limit headers say. */
export interface Reading {
  /** One per resource the answer reported. */
  readonly figures: readonly Figures[];
  /** Seconds the server asked to wait, when it asked. */
  readonly retryAfter: number | undefined;
  /** Names of the headers whose value did not parse. */
  readonly malformed: readonly string[];
}

/**
 * A non-negative integer header value; undefined when it is not one.
 *
 * @example [parseCount("0"), parseCount("1200"), parseCount("-1"), parseCount("12k")] // [0, 1200, undefined, undefined]
 */
export function parseCount(text: string): number | undefined {
  const trimmed = text.trim();
  if (!COUNT.test(trimmed)) return undefined;
  const count = Number(trimmed.replace(/_/g, ""));
  return Number.isFinite(count) && count >= 0 ? count + 0 : undefined; // + 0: "-0" is 0
}

/**
 * Seconds from `now` (seconds since the epoch; default: the time now) that a header value
 * names; undefined if malformed. Plain seconds (`30`, `1.5`), Go durations (`6m0s`, `20ms`,
 * `1h2m3.5s`), an HTTP date, or an RFC 3339 timestamp (Anthropic's reset); a moment already
 * past is 0.
 *
 * @example [parseDuration("6m0s"), parseDuration("20ms"), parseDuration("1h2m3.5s")] // [360, 0.02, 3723.5]
 */
export function parseDuration(text: string, now?: number): number | undefined {
  const known = durations.get(text);
  if (known !== undefined) return known;
  const trimmed = text.trim();
  if (!trimmed || trimmed.length > MAX_VALUE) return undefined;
  if (NUMBER.test(trimmed) || DURATION.test(trimmed)) {
    let seconds = 0;
    if (NUMBER.test(trimmed)) seconds = Number(trimmed.endsWith(".") ? trimmed.slice(0, -1) : trimmed);
    else for (const [, n, unit] of trimmed.matchAll(PART)) seconds += Number(n) * UNITS[unit!]!;
    if (!Number.isFinite(seconds)) return undefined;
    if (durations.size >= CACHED) durations.clear();
    durations.set(text, seconds); // providers repeat a handful of spellings
    return seconds;
  }
  const moment = timestamp(trimmed);
  if (moment === undefined) return undefined;
  return Math.max(0, moment - (now ?? Date.now() / 1000));
}

/** Seconds since the epoch of date and time fields (UTC), undefined when one is out of range. */
function utc(year: number, month: number, day: number, hour: number, minute: number, second: number, fraction = 0): number | undefined {
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  if (new Date(ms).getUTCDate() !== day) return undefined; // 31 April
  return ms / 1000 + fraction;
}

/** Seconds since the epoch of an RFC 3339 timestamp or an HTTP date; undefined if neither. */
function timestamp(text: string): number | undefined {
  let m = ISO.exec(text);
  if (m) {
    const fraction = m[7] ? Number(`0.${m[7]}`) : 0;
    const base = utc(+m[1]!, +m[2]!, +m[3]!, +(m[4] ?? 0), +(m[5] ?? 0), +(m[6] ?? 0), fraction);
    if (base === undefined) return undefined;
    const zone = m[8];
    if (!zone || zone === "Z" || zone === "z") return base;
    const digits = zone.replace(":", "");
    const offset = (Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5) || 0)) * 60;
    return zone[0] === "-" ? base + offset : base - offset;
  }
  let day: number, month: number, year: number, hour: number, minute: number, second: number;
  let zone: string | undefined;
  if ((m = HTTP_DATE.exec(text))) {
    [day, month, year, hour, minute, second, zone] = [+m[1]!, MONTHS.indexOf(m[2]!.toLowerCase()), +m[3]!, +m[4]!, +m[5]!, +(m[6] ?? 0), m[7]];
    if (m[3]!.length === 2) year += year > 68 ? 1900 : 2000;
  } else if ((m = ASCTIME.exec(text))) {
    [month, day, hour, minute, second, year] = [MONTHS.indexOf(m[1]!.toLowerCase()), +m[2]!, +m[3]!, +m[4]!, +m[5]!, +m[6]!];
  } else {
    return undefined;
  }
  if (month < 0 || month % 3 !== 0) return undefined;
  const base = utc(year, month / 3 + 1, day, hour, minute, second);
  if (base === undefined || zone === undefined || !/^[+-]/.test(zone)) return base; // HTTP dates are GMT
  const offset = (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5))) * 60;
  return zone[0] === "-" ? base + offset : base - offset;
}

/** The rate-limit headers of `headers` (lower-cased name -> value), undefined when it has none. */
function present(headers: unknown): Map<string, string> | undefined {
  if (headers === null || typeof headers !== "object") return undefined;
  let found: Map<string, string> | undefined;
  const take = (name: unknown, value: unknown): void => {
    const lower = String(name).toLowerCase();
    if (NAMES.has(lower) && value !== undefined && value !== null) (found ??= new Map()).set(lower, String(value));
  };
  const entries = (headers as { entries?: unknown }).entries;
  if (typeof entries === "function" && typeof (headers as { get?: unknown }).get === "function") {
    // fetch Headers (names lower-cased already) and Maps: one pass over the names
    for (const [name, value] of (entries as () => Iterable<[unknown, unknown]>).call(headers)) take(name, value);
  } else if (Array.isArray(headers)) {
    for (const pair of headers as unknown[]) if (Array.isArray(pair)) take(pair[0], pair[1]);
  } else {
    for (const name of Object.keys(headers)) take(name, (headers as Record<string, unknown>)[name]);
  }
  return found;
}

/**
 * The rate-limit figures of an answer's headers; undefined when it carries none. Per resource,
 * the first tier of header sets the answer carries gives its figures; within a tier (Anthropic's
 * input and output tokens) the set with the least budget left wins.
 *
 * @example readHeaders({ "x-ratelimit-remaining-tokens": "0", "retry-after": "2" })
 * // { figures: [{ resource: "tokens", limit: undefined, remaining: 0, reset: undefined }], retryAfter: 2, malformed: [] }
 */
export function readHeaders(headers: unknown, now?: number): Reading | undefined {
  const found = present(headers);
  if (found === undefined) return undefined;
  const malformed: string[] = [];
  const figures: Figures[] = [];
  const done = new Set<string>();
  for (const [resource, sets] of TIERS) {
    if (done.has(resource)) continue;
    let best: Figures | undefined;
    for (const [limitName, remainingName, resetName] of sets) {
      if (!found.has(limitName) && !found.has(remainingName) && !found.has(resetName)) continue;
      const candidate: Figures = {
        resource,
        limit: field(found, limitName, malformed, false),
        remaining: field(found, remainingName, malformed, false),
        reset: field(found, resetName, malformed, true, now),
      };
      if (best === undefined || left(candidate) < left(best)) best = candidate;
    }
    if (best !== undefined) {
      done.add(resource);
      if (best.limit !== undefined || best.remaining !== undefined || best.reset !== undefined) figures.push(best);
    }
  }
  let retryAfter: number | undefined;
  for (const [name, unit] of RETRY_AFTER) {
    const text = found.get(name);
    if (text === undefined) continue;
    const wait = field(found, name, malformed, true, now);
    // a unit applies to a number; a date is seconds from now already
    if (wait !== undefined && retryAfter === undefined) retryAfter = NUMBER.test(text.trim()) ? wait * unit : wait;
  }
  return { figures, retryAfter, malformed };
}

/** A count (`duration` false), else a duration, of header `name`; undefined if absent or malformed. */
function field(found: Map<string, string>, name: string, malformed: string[], duration: boolean, now?: number): number | undefined {
  const text = found.get(name);
  if (text === undefined) return undefined;
  const value = duration ? parseDuration(text, now) : parseCount(text);
  if (value === undefined || value === Infinity) {
    malformed.push(name);
    return undefined;
  }
  return value;
}

/** The share of the budget left (the remaining count when the limit is unknown). */
function left(f: Figures): number {
  if (f.remaining === undefined) return Infinity;
  return f.limit ? f.remaining / f.limit : f.remaining;
}
