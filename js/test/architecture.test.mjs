// The module map of js/src, checked from the source so that it cannot drift: the Node.js twin of
// tests/test_architecture.py. Imports flow one way: the pure modules (vocabulary, classifier,
// stream judge, filters, operation table, redaction, guard) import only their pure neighbours;
// the engine knows no patch and no scope; only the front imports the patch; no import cycles;
// no file past what a reader holds; and every file has a rule, so a new one is placed on purpose.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const SRC = join(dirname(fileURLToPath(import.meta.url)), "..", "src");

// module -> the js/src modules it may import (nothing else), as PURE in tests/test_architecture.py.
const PURE = {
  // The shared data file, loaded and frozen: imports nothing, and every module may import it.
  vocabulary: [],
  taxonomy: [],
  filters: ["taxonomy"],
  classify: ["taxonomy", "filters"],
  "stream-judge": ["classify", "taxonomy", "filters"],
  // A type only (ResultKind, the `kind` of an operation); Python's operation table types it as str.
  operations: ["taxonomy"],
  // Python's regex dialect as JavaScript (the vocabulary's secret patterns are written in it).
  regex: [],
  redact: ["regex"],
  guard: ["redact"],
  // The JSON Schema checks (ajv, loaded when present): no telemetry, errors returned.
  schemas: [],
  // The judge of an answer against what its request declared (tools, structured output).
  declared: ["schemas", "taxonomy"],
  // Agent frameworks' end-of-run errors by class name: the classifier, extended.
  agents: ["classify", "taxonomy"],
  // Rate-limit headers read into figures (counts, durations, dates): no telemetry.
  ratelimit: [],
};
// Modules every module may import (pure ones included).
const EVERYONE = ["vocabulary"];
// The patch, and what it does with an SDK call's answer (a promise, a stream, a parse()).
const PATCHES = ["instrument", "answers"];
// The modules that may import the patch: the package's front.
const PATCH_USERS = ["index"];
// The engine and what it is made of: they know no patch and no scope.
// `judged` records a judgement on its call (the tool-call counter, span attributes).
// `attempts` counts each HTTP attempt, its backoff and the headroom its answer's headers report.
const ENGINE = ["engine", "account", "spans", "judged", "attempts"];
const SCOPE = ["scope", "decoration"];
// The rest, each with its job, so that a file nobody placed fails `every file has a rule`.
const OTHERS = ["config", "capped", "metrics", "retry", "validators", "video", "server", "repr"];
// Longer files allowed: tables, where a split would only scatter one list (none yet).
const TABLES = [];
const MAX_LINES = 460;

const KNOWN = [...Object.keys(PURE), ...PATCHES, ...PATCH_USERS, ...ENGINE, ...SCOPE, ...OTHERS];

/** The js/src modules a source text imports: `from "./x.js"`, `import "./x.js"`, `import("./x.js")`. */
function importsOf(text) {
  const found = new Set();
  const specifiers = /(?:\bfrom|\bimport)\s*\(?\s*["']([^"']+)["']/g;
  for (const match of text.matchAll(specifiers)) {
    const spec = match[1];
    if (!spec.startsWith(".")) continue; // a package: node:fs, openai, prom-client
    const local = /^\.\/([a-z0-9-]+)\.js$/.exec(spec);
    // Another relative form (a sub-folder, `../`, no `.js`) is one the checker does not map: fail.
    found.add(local ? local[1] : `unmapped:${spec}`);
  }
  return found;
}

/** A cycle of `graph` (module -> imported modules) as [a, b, ..., a], or undefined. */
function findCycle(graph) {
  const state = new Map(); // 1: on the path, 2: done
  const path = [];
  const visit = (node) => {
    state.set(node, 1);
    path.push(node);
    for (const next of [...(graph[node] ?? [])].sort()) {
      if (state.get(next) === 1) {
        // told from its first module in name order, whichever module the walk began at
        const ring = path.slice(path.indexOf(next));
        const first = ring.indexOf([...ring].sort()[0]);
        const turned = [...ring.slice(first), ...ring.slice(0, first)];
        return [...turned, turned[0]];
      }
      if (!state.has(next)) {
        const cycle = visit(next);
        if (cycle) return cycle;
      }
    }
    path.pop();
    state.set(node, 2);
    return undefined;
  };
  for (const node of Object.keys(graph).sort()) {
    if (!state.has(node)) {
      const cycle = visit(node);
      if (cycle) return cycle;
    }
  }
  return undefined;
}

/** Every broken rule of a module map: {module: {imports, lines}}; [] when it keeps them all. */
function violations(modules) {
  const found = [];
  const names = Object.keys(modules).sort();
  for (const name of names) {
    if (!KNOWN.includes(name)) found.push(`${name}.ts has no rule in architecture.test.mjs`);
  }
  for (const name of KNOWN) if (!names.includes(name)) found.push(`${name}.ts has a rule but no file`);
  const graph = Object.fromEntries(names.map((name) => [name, [...modules[name].imports]]));
  for (const [name, imported] of Object.entries(graph)) {
    for (const other of imported) {
      if (!names.includes(other)) found.push(`${name} imports ${other}, not a module of js/src`);
    }
    const allowed = PURE[name];
    if (allowed !== undefined) {
      const extra = imported.filter((other) => !allowed.includes(other) && !(EVERYONE.includes(other) && name !== other));
      if (extra.length) found.push(`${name} is pure but imports ${extra.sort().join(", ")}`);
    }
    if (!PATCH_USERS.includes(name) && !PATCHES.includes(name)) {
      for (const patch of PATCHES) if (imported.includes(patch)) found.push(`${name} imports the patch (${patch})`);
    }
    if (ENGINE.includes(name)) {
      for (const other of [...PATCHES, ...SCOPE]) {
        if (imported.includes(other)) found.push(`the engine (${name}) imports ${other}`);
      }
    }
    const lines = modules[name].lines;
    if (lines > MAX_LINES && !TABLES.includes(name)) found.push(`${name}.ts has ${lines} lines (at most ${MAX_LINES})`);
  }
  const cycle = findCycle(graph);
  if (cycle) found.push(`import cycle: ${cycle.join(" -> ")}`);
  return found;
}

function sources() {
  const modules = {};
  for (const file of readdirSync(SRC).sort()) {
    if (!file.endsWith(".ts")) continue;
    const text = readFileSync(join(SRC, file), "utf8");
    modules[file.slice(0, -3)] = { imports: importsOf(text), lines: text.replace(/\n$/, "").split("\n").length };
  }
  return modules;
}

test("js/src keeps its module map: rules for every file, pure modules, one-way engine, no cycle, size cap", () => {
  assert.deepEqual(violations(sources()), []);
});

test("the map is where this test looks", () => {
  const modules = sources();
  assert.ok(Object.keys(modules).length >= KNOWN.length);
  // the checker itself: imports of each form are seen
  assert.ok(modules.index.imports.has("instrument"));
  assert.ok(modules.guard.imports.has("redact"));
  assert.ok(modules.filters.imports.has("taxonomy"));
  assert.ok(modules.taxonomy.imports.has("vocabulary"));
  assert.equal(modules.vocabulary.imports.size, 0);
});

// Each rule fails on a broken map: the real one with one thing changed.
function broken(change) {
  const modules = structuredClone(sources());
  change(modules);
  return violations(modules);
}

test("the checker parses every import form and refuses relative paths it does not map", () => {
  const text = [
    'import { a } from "./taxonomy.js";',
    'import type { B } from "./classify.js";',
    'export { c } from "./filters.js";',
    'export * as d from "./guard.js";',
    'import "./redact.js";',
    'const e = await import("./spans.js");',
    'import { f } from "../outside.js";',
    'import { g } from "./sub/inner.js";',
    'import OpenAI from "openai";',
    'import { inspect } from "node:util";',
  ].join("\n");
  assert.deepEqual(
    [...importsOf(text)].sort(),
    ["classify", "filters", "guard", "redact", "spans", "taxonomy", "unmapped:../outside.js",
      "unmapped:./sub/inner.js"],
  );
});

test("a broken map fails: cycle, pure module, patch import, engine importing the scope, size, unknown file", () => {
  assert.deepEqual(broken((m) => m.taxonomy.imports.add("filters")), [
    "taxonomy is pure but imports filters",
    "import cycle: filters -> taxonomy -> filters",
  ]);
  assert.deepEqual(broken((m) => m.vocabulary.imports.add("regex")), ["vocabulary is pure but imports regex"]);
  assert.deepEqual(broken((m) => m.vocabulary.imports.add("taxonomy")), [
    "vocabulary is pure but imports taxonomy",
    "import cycle: taxonomy -> vocabulary -> taxonomy",
  ]);
  assert.deepEqual(broken((m) => m.video.imports.add("config")), ["import cycle: config -> video -> config"]);
  assert.deepEqual(broken((m) => m.guard.imports.add("config")), [
    "guard is pure but imports config",
    "import cycle: config -> guard -> config",
  ]);
  assert.deepEqual(broken((m) => m.decoration.imports.add("instrument")), [
    "decoration imports the patch (instrument)",
  ]);
  assert.deepEqual(broken((m) => m.account.imports.add("scope")), [
    "the engine (account) imports scope",
    "import cycle: account -> scope -> account",
  ]);
  assert.deepEqual(broken((m) => (m.engine.lines = MAX_LINES + 1)), [
    `engine.ts has ${MAX_LINES + 1} lines (at most ${MAX_LINES})`,
  ]);
  assert.deepEqual(broken((m) => (m.utils = { imports: new Set(), lines: 1 })), [
    "utils.ts has no rule in architecture.test.mjs",
  ]);
  const missing = broken((m) => delete m.repr);
  assert.equal(missing[0], "repr.ts has a rule but no file");
  assert.ok(missing.includes("config imports repr, not a module of js/src"), missing);
  assert.deepEqual(broken((m) => m.retry.imports.add("unmapped:./sub/x.js")), [
    "retry imports unmapped:./sub/x.js, not a module of js/src",
  ]);
});
