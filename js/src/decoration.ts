// What tracedGeneration checks when it wraps: its `operation` option. Misuse fails there, where
// it is written, with the fix in the message; nothing is checked per call.
import { KNOWN_OPERATIONS } from "./operations.js";
import { repr } from "./repr.js";
import { VOCABULARY } from "./vocabulary.js";

// API and SDK names that are not the label the patch gives the same calls.
const ALIASES: Readonly<Record<string, string>> = VOCABULARY.operation_aliases;
const OPERATION_RE = /^[a-z][a-z0-9_]{0,63}$/;
const TYPO_CUTOFF = 0.85; // "chatt", "embedding", "text_completions"; not "image_edit"

/**
 * How alike two strings are, as Python's difflib.SequenceMatcher(None, a, b).ratio(): twice the
 * characters of the matching blocks (longest first, then recursively either side) over both lengths.
 *
 * @example similarity("chatt", "chat") // 0.888…
 */
export function similarity(a: string, b: string): number {
  const total = a.length + b.length;
  return total ? (2 * matched(a, 0, a.length, b, 0, b.length)) / total : 1;
}

function matched(a: string, alo: number, ahi: number, b: string, blo: number, bhi: number): number {
  // The longest common block, earliest in `a` then in `b` among equals, as difflib finds it.
  let besti = alo;
  let bestj = blo;
  let size = 0;
  let lengths = new Map<number, number>();
  for (let i = alo; i < ahi; i++) {
    const next = new Map<number, number>();
    for (let j = blo; j < bhi; j++) {
      if (a[i] !== b[j]) continue;
      const k = (lengths.get(j - 1) ?? 0) + 1;
      next.set(j, k);
      if (k > size) [besti, bestj, size] = [i - k + 1, j - k + 1, k];
    }
    lengths = next;
  }
  if (size === 0) return 0;
  return size + matched(a, alo, besti, b, blo, bestj) + matched(a, besti + size, ahi, b, bestj + size, bhi);
}

/** The known operation `operation` most likely misspells, as difflib.get_close_matches(n=1) picks it. */
function closest(operation: string): string | undefined {
  let best: string | undefined;
  let score = TYPO_CUTOFF;
  for (const known of KNOWN_OPERATIONS) {
    const s = similarity(known, operation);
    if (s > score || (s === score && (best === undefined || known > best))) [best, score] = [known, s];
  }
  return best;
}

/**
 * RangeError unless `operation` is snake_case (at most 64 characters) and misspells no known
 * operation; another snake_case name is used as given (the contract allows any).
 *
 * @example checkOperation("execute_tool") // passes; checkOperation("chatt") throws: did you mean "chat"?
 */
export function checkOperation(operation: string): void {
  if (KNOWN_OPERATIONS.includes(operation)) return;
  const known = KNOWN_OPERATIONS.join(", ");
  if (!OPERATION_RE.test(operation)) {
    throw new RangeError(
      `failsight: tracedGeneration({ operation: ${repr(operation)} }) must be snake_case (a-z, 0-9 and _, at most 64 characters), ` +
        `as the operations the patch records: ${known}`,
    );
  }
  const meant = Object.hasOwn(ALIASES, operation) ? ALIASES[operation] : closest(operation);
  if (meant !== undefined) {
    throw new RangeError(
      `failsight: tracedGeneration({ operation: ${repr(operation)} }): did you mean ${repr(meant)}? The patch records ${known}; ` +
        "a scope's operation joins their series only when spelled the same (another snake_case name is used as given)",
    );
  }
}
