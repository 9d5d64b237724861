// Copy the shared vocabulary (src/failsight/vocabulary.json, the Python package's) next to the
// compiled modules, byte for byte: dist/vocabulary.js reads it from there at load. Run by
// `npm run build` after tsc, so a clean clone and `npm pack` (prepack) get it too.
import { copyFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const source = fileURLToPath(new URL("../../src/failsight/vocabulary.json", import.meta.url));
const target = fileURLToPath(new URL("../dist/vocabulary.json", import.meta.url));
mkdirSync(fileURLToPath(new URL("../dist/", import.meta.url)), { recursive: true });
copyFileSync(source, target);
