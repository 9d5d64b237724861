// JSON Schema checks of declared tools and structured output, with ajv when it can be loaded
// (the Python package's _schemas with jsonschema). `check(schema, instance)` says whether
// `instance` matches `schema`: true, false, or undefined when it was not checked (ajv missing, a
// schema past the bounds, a schema ajv cannot compile, an error inside the validator). Pure: no
// telemetry; an error is returned to the caller, who counts it (telemetry_errors_total{stage="schema"}).
//
// Validators are compiled once per schema object and kept in a bounded LRU (`schema_cache_size`,
// 256 entries) keyed by the object itself: never a hash of its content, which would cost on
// every call what the cache saves. A schema built afresh for every request misses the cache
// and is compiled each time; the LRU order drops it. A schema ajv refuses is cached with its
// error, and one past the bounds as such, so neither is compiled or walked again. Only schemas
// of at most `max_schema_nodes` nodes (5,000) and `max_schema_depth` levels (64) are compiled,
// which bounds the cache's memory and the work one schema can ask for. Remote references are
// never fetched: ajv has no `loadSchema`, so a `$ref` it cannot resolve fails the compilation
// (the check is undefined). `uniqueItems` is judged on arrays of at most `max_unique_items`
// (1,000) items; `format` is not asserted.
import { createRequire } from "node:module";
import type { Ajv as AjvCore, Options, ValidateFunction } from "ajv";
import { VOCABULARY } from "./vocabulary.js";

const LIMITS = VOCABULARY.declared.limits;
export const MAX_SCHEMA_NODES = LIMITS.max_schema_nodes;
export const MAX_SCHEMA_DEPTH = LIMITS.max_schema_depth;
export const MAX_UNIQUE_ITEMS = LIMITS.max_unique_items;
export const CACHE_SIZE = LIMITS.schema_cache_size;

type AjvClass = new (options: Options) => AjvCore;
/** The ajv classes by dialect: draft-07 (and 06), 2019-09, 2020-12 (the default, as in Python). */
interface Dialects {
  draft7: AjvClass;
  draft2019: AjvClass;
  draft2020: AjvClass;
}

interface Entry {
  validate: ValidateFunction | undefined;
  error: unknown; // why there is no validator (ajv refused the schema)
}

const cache = new Map<object, Entry>(); // in LRU order: the oldest first
let dialects: Dialects | null | undefined; // null: ajv could not be loaded (said once)
let missing = false; // tests: behave as if ajv were not installed
const instances = new Map<AjvClass, AjvCore>();

function moduleClass(module: unknown): AjvClass {
  const found = (module as { default?: unknown }).default ?? module;
  if (typeof found !== "function") throw new TypeError("ajv exports no class");
  return found as AjvClass;
}

/** ajv's classes, or null when ajv is not installed (said once, as a FailsightWarning). */
function loadAjv(): Dialects | null {
  if (dialects !== undefined) return dialects;
  try {
    if (missing) throw new Error("Cannot find package 'ajv' (failsight's tests)");
    const require = createRequire(import.meta.url);
    dialects = {
      draft7: moduleClass(require("ajv")),
      draft2019: moduleClass(require("ajv/dist/2019")),
      draft2020: moduleClass(require("ajv/dist/2020")),
    };
  } catch (error) {
    dialects = null;
    try {
      process.emitWarning(
        "failsight: ajv could not be loaded, so tool arguments and structured output are judged as JSON only, " +
          `not against their declared schemas: npm install ajv (${error instanceof Error ? error.message.slice(0, 200) : "?"})`,
        "FailsightWarning",
      );
    } catch {
      // nothing left to warn with
    }
  }
  return dialects;
}

/**
 * True when schemas are checked (ajv could be loaded).
 *
 * @example available() // true
 */
export function available(): boolean {
  return loadAjv() !== null;
}

/** A canonical text of a JSON value (object keys sorted), for uniqueItems. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>;
    return `{${Object.keys(record).sort().map((key) => `${JSON.stringify(key)}:${canonical(record[key])}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function uniqueItems(unique: unknown, data: unknown): boolean {
  if (unique !== true || !Array.isArray(data) || data.length > MAX_UNIQUE_ITEMS) return true; // past the bound: not judged
  const seen = new Set<string>();
  for (const item of data) {
    const key = canonical(item);
    if (seen.has(key)) return false;
    seen.add(key);
  }
  return true;
}

function instance(cls: AjvClass): AjvCore {
  let ajv = instances.get(cls);
  if (ajv === undefined) {
    // No loadSchema: a remote `$ref` is never fetched. No meta-schema check and no strict mode:
    // a provider's schema is judged as it is read, not refused for a keyword ajv does not know.
    ajv = new cls({ strict: false, validateSchema: false, validateFormats: false, allErrors: false });
    ajv.removeKeyword("uniqueItems");
    ajv.addKeyword({ keyword: "uniqueItems", type: "array", schemaType: "boolean", errors: false, validate: uniqueItems });
    instances.set(cls, ajv);
  }
  return ajv;
}

function dialectOf(schema: object, found: Dialects): AjvClass {
  const uri = (schema as { $schema?: unknown }).$schema;
  if (typeof uri !== "string") return found.draft2020;
  if (/draft-0[67]\b/.test(uri)) return found.draft7;
  if (uri.includes("2019-09")) return found.draft2019;
  return found.draft2020;
}

/** At most MAX_SCHEMA_NODES values, MAX_SCHEMA_DEPTH levels deep (walked without recursion; a cycle exceeds them). */
export function withinBounds(schema: unknown): boolean {
  let nodes = 0;
  const stack: [unknown, number][] = [[schema, 0]];
  while (stack.length) {
    const [value, depth] = stack.pop()!;
    nodes += 1;
    if (nodes > MAX_SCHEMA_NODES || depth > MAX_SCHEMA_DEPTH) return false;
    if (value === null || typeof value !== "object") continue;
    // Counted while pushed: a schema of a million properties stops at the bound, not after copying them.
    if (Array.isArray(value)) {
      if (nodes + stack.length + value.length > MAX_SCHEMA_NODES) return false;
      for (const item of value) stack.push([item, depth + 1]);
    } else {
      for (const key in value) {
        if (nodes + stack.length >= MAX_SCHEMA_NODES) return false;
        stack.push([(value as Record<string, unknown>)[key], depth + 1]);
      }
    }
  }
  return true;
}

function remember(schema: object, entry: Entry): void {
  cache.set(schema, entry);
  while (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value as object);
}

/** The cached entry of `schema`, compiled on a miss; undefined past the bounds or without ajv. */
function entryOf(schema: object): Entry | undefined {
  const hit = cache.get(schema);
  if (hit !== undefined) {
    cache.delete(schema); // to the newest end
    cache.set(schema, hit);
    return hit;
  }
  if (!withinBounds(schema)) {
    const past: Entry = { validate: undefined, error: undefined }; // remembered: not walked again on every call
    remember(schema, past);
    return past;
  }
  const found = loadAjv();
  if (found === null) return undefined;
  const ajv = instance(dialectOf(schema, found));
  let entry: Entry;
  try {
    entry = { validate: ajv.compile(schema), error: undefined };
  } catch (error) {
    entry = { validate: undefined, error };
  } finally {
    try {
      ajv.removeSchema(schema); // ajv's own cache is unbounded: ours is the one that keeps it
    } catch {
      // not added: nothing to remove
    }
  }
  remember(schema, entry);
  return entry;
}

/**
 * [whether `instance` matches `schema`, the error that stopped the check if one did]. Never
 * throws: a schema ajv cannot compile, a reference it cannot resolve, or an instance nested past
 * the stack gives [undefined, that error].
 *
 * @example check({ type: "object", required: ["city"] }, { city: "Paris" }) // [true, undefined]
 */
export function check(schema: unknown, instanceValue: unknown): [boolean | undefined, unknown] {
  if (typeof schema === "boolean") return [schema, undefined];
  if (schema === null || typeof schema !== "object" || Array.isArray(schema)) return [undefined, undefined];
  try {
    const entry = entryOf(schema);
    if (entry === undefined) return [undefined, undefined];
    if (entry.validate === undefined) return [undefined, entry.error];
    return [entry.validate(instanceValue) === true, undefined];
  } catch (error) {
    return [undefined, error]; // a recursive schema over a deeply nested instance, a hostile getter, ...
  }
}

/** How many schemas are cached (bounded by `schema_cache_size`). */
export function cacheSize(): number {
  return cache.size;
}

/** Forget every cached validator and whether ajv loads (tests); `unavailable`: as if ajv were not installed. */
export function clearCache(options: { unavailable?: boolean } = {}): void {
  cache.clear();
  instances.clear();
  dialects = undefined;
  missing = options.unavailable === true;
}
