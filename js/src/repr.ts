// How a value is shown in a misuse error, as Python's repr() shows it there: a string in quotes
// (`got "100"`, not `got 100`), anything else as written in code, bounded.
import { inspect } from "node:util";

const LIMIT = 80;

/**
 * The value as code would write it, at most 80 characters.
 *
 * @example repr("100") // '"100"'
 */
export function repr(value: unknown): string {
  let text: string;
  switch (typeof value) {
    case "string":
      text = JSON.stringify(value);
      break;
    case "number": // NaN and Infinity, which JSON would show as null
    case "boolean":
    case "undefined":
    case "symbol":
      text = String(value);
      break;
    case "bigint":
      text = `${value}n`;
      break;
    case "function":
      text = value.name ? `function ${value.name}` : "an anonymous function";
      break;
    default: // objects as Node shows them: JSON would drop functions and fail on cycles
      text = inspect(value, { depth: 2, breakLength: Infinity, maxArrayLength: 10, maxStringLength: LIMIT });
  }
  return text.length > LIMIT ? `${text.slice(0, LIMIT - 1)}…` : text;
}

/** TypeError unless `options` is a plain options object whose keys are all in `known`. */
export function checkOptions(where: string, options: unknown, known: readonly string[]): void {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new TypeError(`failsight: ${where} takes an options object, got ${repr(options)}`);
  }
  const unknown = Object.keys(options).filter((key) => !known.includes(key));
  if (unknown.length) {
    throw new TypeError(
      `failsight: ${where} got unknown option${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => repr(k)).join(", ")}; ` +
        `the options are ${known.join(", ")}`,
    );
  }
}
