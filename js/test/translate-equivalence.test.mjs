// TEMPORARY: the translated vocabulary patterns against the hand-written rules they replace.
import assert from "node:assert/strict";
import { test } from "node:test";
import { HAND_WRITTEN_ID_LABEL, HAND_WRITTEN_REST, HAND_WRITTEN_SOURCES, translatePattern } from "../dist/redact.js";
import { VOCABULARY } from "../dist/vocabulary.js";

const { rules, macros, id_label } = VOCABULARY.secrets;

test("every translated rule has the hand-written rule's source, in the same order", () => {
  assert.equal(rules.length, HAND_WRITTEN_SOURCES.length);
  rules.forEach((rule, i) => {
    assert.equal(new RegExp(translatePattern(rule.pattern, macros), "dgu").source, HAND_WRITTEN_SOURCES[i], rule.id);
  });
  assert.equal(new RegExp(translatePattern(id_label, macros), "u").source, HAND_WRITTEN_ID_LABEL);
});

test("every rule has the hand-written rule's triggers, accept and precheck", () => {
  const names = { not_an_id: "notAnId", long_run: "hasLongRun" };
  assert.deepEqual(
    rules.map((rule) => [[...rule.triggers], names[rule.accept], names[rule.precheck]]),
    HAND_WRITTEN_REST,
  );
});
