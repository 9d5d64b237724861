// An answer judged against what its request declared (declared.ts), recorded on its call (the
// Python package's _judged). `declare` keeps on the call what the request declares (when judging
// is on for it); `judged` turns a usable answer's outcome into the silent reason the judgement
// found, counting each tool call judged in genai_tool_calls_total{tool, outcome} and putting the
// judgement on the CLIENT span; `judgedError` does the same for an error the SDK's `parse()`
// helpers threw while reading such an answer, so that `create` and `parse` end alike.
//
// Span attributes: the GenAI semantic conventions name a tool (`gen_ai.tool.name`) on the span
// of its execution, one tool per span; the CLIENT span of an inference may return many calls,
// so it carries failsight's own counts instead: failsight.tool_calls.count (calls judged),
// failsight.tool_calls.failed, and failsight.tool_calls.failed_tool (the first failing call's
// name as the model wrote it, masked and cut), next to failsight.failure_reason.
import { rememberJudged } from "./account.js";
import { classifyResult } from "./classify.js";
import { declaredOf, judge, NOT_JSON, OK, OUTPUT_MISMATCH, OUTPUT_NOT_JSON, STRICT_VIOLATION, TOOL_CALL_REASONS, type Declared, type Judgement } from "./declared.js";
import type { Call } from "./engine.js";
import { swallow } from "./guard.js";
import { maskSecrets } from "./redact.js";
import { ATTR } from "./spans.js";
import type { Outcome } from "./taxonomy.js";

const KINDS: ReadonlySet<string> = new Set(["chat", "responses"]);
const STAGE = "schema";

/** Judging is on for `call`: its scope's `judgeDeclared`, else the settings'. */
function enabled(call: Call): boolean {
  return call.account?.judgeDeclared ?? call.state.judgeDeclared;
}

/**
 * Keep on `call` what `body` declares, when the call's kind is judged and judging is on.
 *
 * @example declare(call, { model: "gpt-4o", tools: [...] }) // call.declared is set
 */
export function declare(call: Call, body: unknown): void {
  if (body === null || typeof body !== "object") return;
  try {
    const b = body as Record<string, unknown>;
    if (b.tools === undefined && b.response_format === undefined && b.text === undefined) return; // the plain call: three look-ups
    if (KINDS.has(call.op.kind) && enabled(call)) call.declared = declaredOf(body, call.op.kind);
  } catch (error) {
    swallow("call_start", error);
  }
}

function spanRecording(call: Call): boolean {
  try {
    return call.span.isRecording();
  } catch {
    return false;
  }
}

function record(call: Call, judgement: Judgement): void {
  for (const error of judgement.errors) swallow(STAGE, error); // counted and warned; a hostile schema is no bug to throw
  if (!judgement.calls.length) return;
  const labels = call.account ? call.account.labels() : call.labels;
  const metric = call.state.metrics.toolCalls;
  let failed = 0;
  for (const [tool, outcome] of judgement.calls) {
    metric.metric.inc(metric.labels([...labels, tool, outcome]));
    if (outcome !== OK) failed += 1;
  }
  if (spanRecording(call)) {
    const values = call.values;
    values[ATTR.toolCalls] = judgement.calls.length;
    values[ATTR.toolCallsFailed] = failed;
    if (judgement.failedTool !== undefined) values[ATTR.failedTool] = maskSecrets(judgement.failedTool);
  }
}

/**
 * `o` of `answer`, or its silent failure when the answer breaks what the request declared.
 * Only a usable answer (no failure yet) of a call that declared something is judged.
 *
 * @example judged(call, classifyResult(answer, "chat"), answer).reason // "tool_not_declared"
 */
export function judged(call: Call, o: Outcome, answer: unknown): Outcome {
  const declared = call.declared;
  if (declared === undefined || o.failureClass !== "none") return o;
  const judgement = judge(declared, answer, call.op.kind);
  record(call, judgement);
  if (judgement.reason === undefined) return o;
  return { ...o, failureClass: "silent", reason: judgement.reason };
}

/**
 * The reason of an error the SDK's `parse()` helpers throw while reading an answer the
 * judgement passed: not JSON (a SyntaxError of JSON.parse), else the declared shape refused (the
 * format's own parser: Zod's error, say). Structured output first, then tools; undefined when
 * nothing was declared.
 *
 * @example parseErrorReason(new SyntaxError("Unexpected token"), declaredOf({ response_format: { type: "json_object" } }, "chat")!) // "invalid_json"
 */
export function parseErrorReason(error: unknown, declared: Declared): string | undefined {
  const notJson = error instanceof SyntaxError || (error instanceof Error && error.name === "SyntaxError");
  if (declared.output !== undefined) return notJson ? OUTPUT_NOT_JSON : OUTPUT_MISMATCH;
  if (declared.tools.size) return TOOL_CALL_REASONS[notJson ? NOT_JSON : STRICT_VIOLATION];
  return undefined;
}

/**
 * The outcome of a call whose answer `raw` was read, then refused by the SDK's `parse()` with
 * `error`: the answer's own failure (a cut or filtered answer: the SDK's error says so too), else
 * its judgement, else the reason the error gives. The error is then remembered as explained by
 * the judgement, so the request's reason is the judgement's, not the error's.
 */
export function judgedError(call: Call, error: unknown, raw: unknown): Outcome {
  const seen = classifyResult(raw, call.op.kind);
  const declared = call.declared;
  if (declared === undefined || seen.failureClass !== "none") return seen;
  const found = judged(call, seen, raw);
  const reason = found.failureClass === "silent" ? found.reason : parseErrorReason(error, declared);
  if (reason === undefined) return seen;
  rememberJudged(error);
  return { ...found, failureClass: "silent", reason, errorType: undefined };
}
