// What the package says about itself holds: its license file, its README's code, its version claims.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { test } from "node:test";
import { VERSION as VERSION7 } from "openai/version";
import { VERSION as VERSION6 } from "openai6/version";
import * as failsight from "../dist/index.js";
import { repoRoot } from "./helpers.mjs";

const js = resolve(repoRoot, "js");
const pkg = JSON.parse(readFileSync(resolve(js, "package.json"), "utf8"));
const readme = readFileSync(resolve(js, "README.md"), "utf8");

test("the license is the repository's: Apache-2.0, the same LICENSE text", () => {
  assert.equal(pkg.license, "Apache-2.0");
  assert.equal(readFileSync(resolve(js, "LICENSE"), "utf8"), readFileSync(resolve(repoRoot, "LICENSE"), "utf8"));
  for (const file of ["README.md", "LICENSE", "dist"]) assert.ok(pkg.files.includes(file), file);
});

test("every name the README imports from failsight is exported", () => {
  const imported = [...readme.matchAll(/import \{([^}]+)\} from "failsight"/g)].flatMap((m) => m[1].split(",").map((n) => n.trim()));
  assert.ok(imported.length > 3, imported.join(", "));
  for (const name of imported) assert.ok(name in failsight, name);
  for (const name of readme.matchAll(/^- `(\w+)\(/gm)) assert.ok(name[1] in failsight, name[1]);
});

test("the README states the versions the tests run: openai 6 and 7, Node.js 20 and 22", () => {
  assert.equal(pkg.engines.node, ">=20");
  assert.equal(pkg.peerDependencies.openai, ">=6 <8");
  assert.deepEqual([Number(VERSION6.split(".")[0]), Number(VERSION7.split(".")[0])], [6, 7]);
  const tested = `openai ${VERSION6.split(".").slice(0, 2).join(".")} and ${VERSION7.split(".").slice(0, 2).join(".")}`;
  assert.ok(readme.includes(tested), tested);
  assert.match(readme, /tests run on Node\.js 20 and 22/);
});

test("the README is for users: no contributor wording, no paths of a machine", () => {
  for (const word of [/\bSPEC\b/, /\bissue \d+/i, /\barticle\b/i, /\/(work|tmp|home|root)\//]) {
    assert.doesNotMatch(readme, word);
  }
  assert.deepEqual(readme.match(/\w*target\w*/gi), ["target"]);
  assert.match(readme, /scrape target/);
});
