// The one table of operations the SDK patch is built from: what each call is (its `operation`
// label, how the classifier reads its answer, `openai.api.type`, a request or a video poll) and
// where the openai SDK keeps it, read from the vocabulary's `operations`. Imports nothing from
// failsight but the vocabulary and a type of the taxonomy.
import type { ResultKind } from "./taxonomy.js";
import { VOCABULARY } from "./vocabulary.js";

export interface Operation {
  name: string; // the `operation` label
  kind: ResultKind;
  apiType: string;
  poll: boolean; // advances a video job; not a request
}

/** Where the openai SDK keeps the methods of one operation. */
export interface Patched {
  path: readonly string[];
  methods: readonly string[];
  op: Operation;
  /** Where the request body is among the arguments. */
  bodyArg: number;
}

/** Every (path, methods) of the vocabulary's `operations`, each entry's `node` list in order. */
export const OPERATIONS: readonly Patched[] = Object.values(VOCABULARY.operations).flatMap((entry) => {
  const op: Operation = { name: entry.operation, kind: entry.kind, apiType: entry.api_type, poll: entry.role === "poll" };
  return entry.node.map((sdk) => ({ path: sdk.path, methods: sdk.methods, op, bodyArg: sdk.body_arg }));
});

/** The `operation` labels the patch records, sorted (a scope's operation option is checked against them). */
export const KNOWN_OPERATIONS: readonly string[] = [...new Set(OPERATIONS.map((patched) => patched.op.name))].sort();
