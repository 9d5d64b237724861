// What a request declares, judged against its answer: tool calls and structured output (the
// Python package's _declared). A request that offers `tools`, forces a call with `tool_choice`,
// or asks for structured output (`response_format` of chat completions, `text.format` of the
// Responses API) says what a correct answer looks like, so a wrong one is a silent failure seen
// without a user validator. Pure: the request body and the answer in, a Judgement out; no
// telemetry. `declaredOf` returns at once for a request that declares nothing (two look-ups).
//
// Order of the checks (the first failure found names the request; every tool call judged gets
// its own outcome in tool_calls_total; a user validator runs after all of these):
// 1. choice by choice (chat completions; the Responses API has one output):
//    a. each tool call in the order the answer gives them, at most `max_tool_calls` (128; the
//       rest are neither judged nor counted): a name the request did not declare is
//       `not_declared` (label `undeclared`); arguments that are not JSON are `not_json`; JSON
//       that is not an object, or that its declared `parameters` schema rejects, is
//       `strict_violation` when the tool said `strict: true` (the provider broke its promise),
//       else `invalid_arguments`; otherwise `ok`;
//    b. `tool_choice` "required" (or `allowed_tools` in mode "required") with no tool call at
//       all, or naming a function (or custom tool) that was not called: `tool_call_missing`;
//    c. structured output (`json_schema` or `json_object`): content that is not JSON is
//       `invalid_json`; JSON that the `json_schema` schema rejects is `output_schema_mismatch`.
//       Content that is absent (a tool call, a refusal) is not judged.
// 2. Only answers the classifier found usable are judged (judged.ts): a truncated or filtered
//    answer keeps its own reason.
//
// Bounds (`declared.limits`, shared with Python): a string longer than `max_parsed_length`
// (1 MiB) characters is not parsed, and its call is neither judged nor counted (an undeclared
// name still is); the arguments of one answer are parsed up to that many characters in all.
// JSON longer than `max_validated_length` (64 KiB) is judged as JSON but not against its
// schema, as is everything when ajv is missing (schemas.ts).
import { check } from "./schemas.js";
import { asList, field, MAX_TEXT } from "./taxonomy.js";
import { VOCABULARY } from "./vocabulary.js";

const D = VOCABULARY.declared;
export const MAX_TOOL_CALLS = D.limits.max_tool_calls;
export const MAX_PARSED_LENGTH = D.limits.max_parsed_length;
export const MAX_VALIDATED_LENGTH = D.limits.max_validated_length;
export const UNDECLARED = D.undeclared_tool;
export const TOOL_CALL_REASONS = D.tool_call_reasons;
export const MISSING = D.missing_reason;
export const OUTPUT_NOT_JSON = D.output_reasons.not_json;
export const OUTPUT_MISMATCH = D.output_reasons.schema_mismatch;
/** Tool-call outcomes (`tool_call_outcomes`): the first passes, the others fail. */
export const OK = VOCABULARY.tool_call_outcomes[0]!;
export const NOT_JSON = "not_json";
const NOT_DECLARED = "not_declared";
const INVALID_ARGUMENTS = "invalid_arguments";
export const STRICT_VIOLATION = "strict_violation";
for (const name of [NOT_JSON, NOT_DECLARED, INVALID_ARGUMENTS, STRICT_VIOLATION]) {
  if (TOOL_CALL_REASONS[name] === undefined) throw new Error(`failsight: vocabulary.json has no tool-call outcome ${name}`);
}

const FUNCTION = "function";
const CUSTOM = "custom";
const JSON_SCHEMA = "json_schema";
const JSON_OBJECT = "json_object";
const REQUIRED = "required";
const ANY = ""; // Declared.choice: some tool call must come back

/** A declared function: its `parameters` schema (undefined: not given) and `strict`. */
interface Tool {
  schema: unknown;
  strict: boolean;
}

/** What one request declares; made by declaredOf. */
export interface Declared {
  tools: Map<string, Tool>; // function tools by name
  custom: Set<string>; // custom tools (free-form input: their calls are not judged)
  choice: string | undefined; // undefined: no call required; "": some call; else the name to call
  output: string | undefined; // "json_object" or "json_schema"
  schema: unknown; // the output's JSON Schema (json_schema)
  strict: boolean; // the output format said `strict: true`
}

/**
 * The verdict on one answer: the silent reason (undefined: none), per tool call judged its `tool`
 * label and outcome, the first failing call's name as the model gave it, and the errors that
 * stopped a schema check (counted by the caller).
 */
export interface Judgement {
  reason: string | undefined;
  calls: [string, string][];
  failedTool: string | undefined;
  errors: unknown[];
}

function isRecord(value: unknown): boolean {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function toolsOf(entries: unknown[]): [Map<string, Tool>, Set<string>] {
  const tools = new Map<string, Tool>();
  const custom = new Set<string>();
  for (const entry of entries) {
    const kind = field(entry, "type");
    const inner = typeof kind === "string" ? field(entry, kind) : undefined;
    const spec = isRecord(inner) ? inner : entry; // chat nests, Responses does not
    const name = field(spec, "name");
    if (typeof name !== "string") continue;
    if (kind === FUNCTION) tools.set(name, { schema: field(spec, "parameters") ?? undefined, strict: field(spec, "strict") === true });
    else if (kind === CUSTOM) custom.add(name);
  }
  return [tools, custom];
}

function choiceOf(choice: unknown): string | undefined {
  if (choice === REQUIRED) return ANY;
  const kind = field(choice, "type");
  if (kind === FUNCTION || kind === CUSTOM) {
    const inner = field(choice, kind);
    const name = field(isRecord(inner) ? inner : choice, "name");
    return typeof name === "string" ? name : undefined;
  }
  if (kind === "allowed_tools") {
    const inner = field(choice, "allowed_tools");
    return field(isRecord(inner) ? inner : choice, "mode") === REQUIRED ? ANY : undefined;
  }
  return undefined;
}

/**
 * What `request` (an SDK call's body) declares for an answer of `kind` ("chat" or "responses");
 * undefined when nothing is declared.
 *
 * @example declaredOf({ response_format: { type: "json_object" } }, "chat")?.output // "json_object"
 */
export function declaredOf(request: unknown, kind: string): Declared | undefined {
  const entries = field(request, "tools");
  let fmt = field(request, kind === "responses" ? "text" : "response_format");
  if ((fmt === undefined || fmt === null) && (entries === undefined || entries === null)) return undefined; // the plain call
  let spec: unknown;
  if (kind === "responses") {
    fmt = isRecord(fmt) ? field(fmt, "format") : undefined;
    spec = fmt;
  } else {
    spec = isRecord(fmt) ? field(fmt, JSON_SCHEMA) : undefined;
  }
  let output = isRecord(fmt) ? field(fmt, "type") : undefined;
  if (output !== JSON_SCHEMA && output !== JSON_OBJECT) output = undefined;
  const list = Array.isArray(entries) && entries.length ? entries : [];
  if (!list.length && output === undefined) return undefined;
  const [tools, custom] = toolsOf(list);
  return {
    tools,
    custom,
    choice: choiceOf(field(request, "tool_choice")),
    output: output as string | undefined,
    schema: output === JSON_SCHEMA ? (field(spec, "schema") ?? undefined) : undefined,
    strict: output !== undefined && field(spec, "strict") === true,
  };
}

/** [true, value] for JSON text, [false] when it is not JSON. */
function parse(text: string): [boolean, unknown] {
  try {
    return [true, JSON.parse(text)];
  } catch {
    return [false, undefined];
  }
}

/** One judgement being made: the budget of characters parsed, what was found. */
class Run {
  budget = MAX_PARSED_LENGTH;
  readonly calls: [string, string][] = [];
  readonly errors: unknown[] = [];
  reason: string | undefined;
  failedTool: string | undefined;

  constructor(readonly declared: Declared) {}

  fail(reason: string): void {
    if (this.reason === undefined) this.reason = reason;
  }

  /** False only when `schema` was checked and rejects `value`. */
  matches(schema: unknown, value: unknown, length: number): boolean {
    if (schema === undefined || schema === null || length > MAX_VALIDATED_LENGTH) return true;
    const [valid, error] = check(schema, value);
    // One error of a schema once per judgement: 1,000 calls of one broken schema count once.
    if (error !== undefined && this.errors.length < 8 && !this.errors.includes(error)) this.errors.push(error);
    return valid !== false;
  }

  toolCall(name: unknown, args: unknown): void {
    if (this.calls.length >= MAX_TOOL_CALLS) return;
    const tool = typeof name === "string" ? this.declared.tools.get(name) : undefined;
    const outcome = this.outcome(tool, args);
    if (outcome === undefined) return; // past the bounds: not judged, not counted
    this.calls.push([tool !== undefined ? (name as string) : UNDECLARED, outcome]);
    if (outcome !== OK) {
      if (this.reason === undefined) this.failedTool = typeof name === "string" ? name.slice(0, MAX_TEXT) : undefined;
      this.fail(TOOL_CALL_REASONS[outcome]!);
    }
  }

  private outcome(tool: Tool | undefined, args: unknown): string | undefined {
    if (tool === undefined) return NOT_DECLARED;
    let value: unknown;
    let length = 0;
    if (typeof args === "string") {
      length = args.length;
      if (length > this.budget) return undefined;
      this.budget -= length;
      const [isJson, parsed] = parse(args);
      if (!isJson) return NOT_JSON;
      value = parsed;
    } else if (isRecord(args)) {
      value = args; // a gateway that sends arguments decoded
    } else {
      return NOT_JSON;
    }
    if (!isRecord(value) || !this.matches(tool.schema, value, length)) return tool.strict ? STRICT_VIOLATION : INVALID_ARGUMENTS;
    return OK;
  }

  content(text: unknown): void {
    const declared = this.declared;
    if (declared.output === undefined || typeof text !== "string" || !text.trim()) return;
    if (text.length > MAX_PARSED_LENGTH) return;
    const [isJson, value] = parse(text);
    if (!isJson) this.fail(OUTPUT_NOT_JSON);
    else if (!this.matches(declared.schema, value, text.length)) this.fail(OUTPUT_MISMATCH);
  }

  called(names: unknown[]): void {
    const choice = this.declared.choice;
    if (choice === undefined) return;
    if ((choice === ANY && !names.length) || (choice !== ANY && !names.includes(choice))) this.fail(MISSING);
  }

  judgement(): Judgement {
    return { reason: this.reason, calls: this.calls, failedTool: this.failedTool, errors: this.errors };
  }
}

function judgeChat(run: Run, answer: unknown): void {
  for (const choice of asList(field(answer, "choices")) ?? []) {
    const message = field(choice, "message");
    const names: unknown[] = [];
    for (const call of asList(field(message, "tool_calls")) ?? []) {
      if (field(call, "type") === CUSTOM) {
        names.push(field(field(call, CUSTOM), "name"));
        continue;
      }
      const fn = field(call, FUNCTION);
      const name = field(fn, "name");
      names.push(name);
      run.toolCall(name, field(fn, "arguments"));
    }
    run.called(names);
    if (!field(message, "refusal")) run.content(field(message, "content"));
  }
}

function judgeResponses(run: Run, answer: unknown): void {
  const names: unknown[] = [];
  const texts: string[] = [];
  for (const item of asList(field(answer, "output")) ?? []) {
    const kind = field(item, "type");
    if (kind === "message") {
      for (const part of asList(field(item, "content")) ?? []) {
        const text = field(part, "text");
        if (field(part, "type") === "output_text" && typeof text === "string") texts.push(text);
      }
    } else if (kind === "function_call") {
      const name = field(item, "name");
      names.push(name);
      if (!field(item, "namespace")) run.toolCall(name, field(item, "arguments")); // a namespaced tool's declaration is not read
    } else if (kind !== "reasoning") {
      names.push(field(item, "name")); // a custom or hosted tool call: a call
    }
  }
  run.called(names);
  if (texts.length) run.content(texts.join(""));
}

/**
 * The verdict on `answer` (kind "chat" or "responses") for what `declared` asks. Throws only
 * what reading a hostile answer throws (the caller guards it).
 *
 * @example judge(declaredOf({ tools: [{ type: "function", function: { name: "f" } }] }, "chat")!,
 *   { choices: [{ message: { tool_calls: [{ type: "function", function: { name: "f", arguments: "{oops" } }] } }] },
 *   "chat").reason // "tool_arguments_not_json"
 */
export function judge(declared: Declared, answer: unknown, kind: string): Judgement {
  const run = new Run(declared);
  if (kind === "responses") judgeResponses(run, answer);
  else judgeChat(run, answer);
  return run.judgement();
}

// ------------------------------------------------------------------ streams

/** Pieces of one string, kept up to MAX_PARSED_LENGTH + 1 characters (what is longer is not judged anyway). */
class Pieces {
  readonly parts: string[] = [];
  length = 0;

  add(piece: string): void {
    if (this.length > MAX_PARSED_LENGTH) return;
    this.parts.push(piece);
    this.length += piece.length;
  }

  text(): string {
    return this.parts.join("");
  }
}

interface ChoiceState {
  text: Pieces;
  refused: boolean;
  calls: Map<unknown, { kind: string; name: Pieces; args: Pieces }>;
}

/**
 * A streamed answer put back together for `judge`: chat deltas (tool calls by index, text when
 * structured output is declared), or a Responses stream's final response. Tool calls are kept
 * up to `max_tool_calls` per choice, choices up to as many.
 *
 * @example const s = new StreamAnswer("chat", false); s.chunk(chunk); judge(declared, s.answer(), "chat")
 */
export class StreamAnswer {
  private readonly choices = new Map<number, ChoiceState>();
  final: unknown;

  constructor(
    readonly kind: string,
    readonly wantText: boolean,
  ) {}

  chunk(item: unknown): void {
    if (this.kind === "responses") {
      if (field(item, "type") === "response.completed") this.final = field(item, "response");
      return;
    }
    for (const choice of asList(field(item, "choices")) ?? []) {
      const delta = field(choice, "delta");
      if (delta === undefined || delta === null) continue;
      const at = field(choice, "index");
      const index = typeof at === "number" ? at : 0;
      let state = this.choices.get(index);
      if (state === undefined) {
        if (this.choices.size >= MAX_TOOL_CALLS) continue;
        state = { text: new Pieces(), refused: false, calls: new Map() };
        this.choices.set(index, state);
      }
      if (this.wantText) {
        const text = field(delta, "content");
        if (typeof text === "string" && text) state.text.add(text);
      }
      if (field(delta, "refusal")) state.refused = true;
      for (const call of asList(field(delta, "tool_calls")) ?? []) this.toolDelta(state.calls, call);
    }
  }

  private toolDelta(calls: ChoiceState["calls"], delta: unknown): void {
    const at = field(delta, "index");
    let entry = calls.get(at);
    if (entry === undefined) {
      if (calls.size >= MAX_TOOL_CALLS) return;
      entry = { kind: FUNCTION, name: new Pieces(), args: new Pieces() };
      calls.set(at, entry);
    }
    const kind = field(delta, "type");
    if (typeof kind === "string") entry.kind = kind;
    const fn = field(delta, FUNCTION);
    const name = field(fn, "name");
    if (typeof name === "string" && name) entry.name.add(name); // pieces are concatenated, as the SDK does
    const args = field(fn, "arguments");
    if (typeof args === "string" && args) entry.args.add(args);
  }

  /** The answer as `judge` reads it (a chat completion, or the final response). */
  answer(): unknown {
    if (this.kind === "responses") return this.final;
    const choices = [...this.choices.entries()]
      .sort(([a], [b]) => a - b)
      .map(([, state]) => ({
        message: {
          content: state.text.parts.length ? state.text.text() : null,
          refusal: state.refused,
          tool_calls: [...state.calls.values()].map((c) => ({ type: c.kind, function: { name: c.name.text(), arguments: c.args.text() } })),
        },
      }));
    return { choices };
  }
}
