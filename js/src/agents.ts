// How an agent framework ends a failed run, as a bounded reason instead of `exception` (the
// Python package's _agents). @openai/agents throws MaxTurnsExceededError when the loop runs out
// of turns, ModelBehaviorError when the model answers what the framework cannot use, and a
// tripwire error when an input or output guardrail fires. Inside a traced scope these end the
// logical request: they are recognised by constructor name anywhere in the prototype chain
// (vocabulary.json `exceptions.node.agents`), so the framework is never imported, and a
// subclass an application derives is recognised too.
import { classifyError } from "./classify.js";
import { HARD_REASONS, outcome, SOFT_REASONS, type FailureClass, type Outcome } from "./taxonomy.js";
import { VOCABULARY } from "./vocabulary.js";

const AGENT_ERRORS: Readonly<Record<string, string>> = VOCABULARY.exceptions.node.agents;

function classOf(reason: string): FailureClass {
  if (HARD_REASONS.has(reason)) return "hard";
  return SOFT_REASONS.has(reason) ? "soft" : "silent";
}

/**
 * The outcome of an agent framework's end-of-run error; undefined for any other error. The most
 * derived class named in the table decides.
 *
 * @example agentOutcome(new (class MaxTurnsExceededError extends Error {})())?.reason // "agent_max_turns"
 */
export function agentOutcome(error: unknown): Outcome | undefined {
  if (error === null || typeof error !== "object") return undefined;
  try {
    let proto: unknown = Object.getPrototypeOf(error);
    for (let depth = 0; proto && depth < 16; depth++) {
      const ctor = Object.prototype.hasOwnProperty.call(proto, "constructor") ? (proto as { constructor?: unknown }).constructor : undefined;
      const name = typeof ctor === "function" ? ctor.name : undefined;
      const reason = typeof name === "string" && Object.hasOwn(AGENT_ERRORS, name) ? AGENT_ERRORS[name] : undefined;
      if (reason !== undefined) {
        const own = (error as { constructor?: { name?: unknown } }).constructor?.name;
        return outcome(classOf(reason), reason, { errorType: typeof own === "string" && own ? own : name });
      }
      proto = Object.getPrototypeOf(proto);
    }
  } catch {
    return undefined; // a hostile prototype chain: an ordinary error
  }
  return undefined;
}

/**
 * classifyError, except that an agent framework's end of a run has its own reason.
 *
 * @example classifyScopeError(new (class InputGuardrailTripwireTriggered extends Error {})()).failureClass // "soft"
 */
export function classifyScopeError(error: unknown): Outcome {
  return agentOutcome(error) ?? classifyError(error);
}
