// The one table of operations the SDK patch is built from: what each call is (its `operation`
// label, how the classifier reads its answer, `openai.api.type`, a request or a video poll) and
// where the openai SDK keeps it. Imports nothing from failsight but a type of the vocabulary.
import type { ResultKind } from "./taxonomy.js";

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

const chat: Operation = { name: "chat", kind: "chat", apiType: "chat_completions", poll: false };
export const OPERATIONS: readonly Patched[] = [
  { path: ["chat", "completions"], methods: ["create"], op: chat, bodyArg: 0 },
  {
    path: ["completions"], methods: ["create"], bodyArg: 0,
    op: { name: "text_completion", kind: "text_completion", apiType: "completions", poll: false },
  },
  { path: ["responses"], methods: ["create"], bodyArg: 0, op: { name: "chat", kind: "responses", apiType: "responses", poll: false } },
  {
    path: ["embeddings"], methods: ["create"], bodyArg: 0,
    op: { name: "embeddings", kind: "embeddings", apiType: "embeddings", poll: false },
  },
  {
    path: ["images"], methods: ["generate", "edit", "createVariation"], bodyArg: 0,
    op: { name: "image_generation", kind: "image", apiType: "images", poll: false },
  },
  {
    path: ["videos"], methods: ["create", "createAndPoll"], bodyArg: 0,
    op: { name: "video_generation", kind: "video", apiType: "videos", poll: false },
  },
  {
    path: ["videos"], methods: ["remix"], bodyArg: 1,
    op: { name: "video_generation", kind: "video", apiType: "videos", poll: false },
  },
  {
    path: ["videos"], methods: ["retrieve"], bodyArg: -1,
    op: { name: "video_generation", kind: "video", apiType: "videos", poll: true },
  },
];

/** The `operation` labels the patch records, sorted (a scope's operation option is checked against them). */
export const KNOWN_OPERATIONS: readonly string[] = [...new Set(OPERATIONS.map((patched) => patched.op.name))].sort();
