"""The module map, checked from the source (`ast`), so that it cannot drift.

Imports flow one way: the pure modules (vocabulary data, taxonomy and classifier, stream
judge, operation table, redaction, guard, deferred queue) import nothing from the rest; the
engine knows no patch; the two patches never import each other; `failsight.testing` imports
nothing from the library. The taxonomy's vocabulary has one home (`_taxonomy`): modules import
its names from there, and `_classify` only for its classifier functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "failsight"

# module -> the failsight modules it may import (nothing else from failsight).
PURE = {
    "_vocabulary": set(),
    "_taxonomy": {"_vocabulary"},
    "_filters": {"_taxonomy", "_vocabulary"},
    "_classify": {"_taxonomy", "_filters"},
    "_stream_judge": {"_classify", "_taxonomy", "_filters"},
    "_operations": {"_vocabulary"},
    "_schemas": {"_vocabulary"},
    "_declared": {"_schemas", "_taxonomy", "_vocabulary"},
    "_agents": {"_classify", "_taxonomy"},
    "_redact": {"_vocabulary"},
    "_guard": {"_redact", "_vocabulary"},
    "_deferred": set(),
    "_ratelimit": {"_vocabulary"},
}
PATCHES = {"_sdk_patch", "_http_patch"}
# What the patches may import: the engine's API, the pure judgements and tables, span and
# redaction helpers, the transport hook, and each patch's own helpers (SDK answers; raw-HTTP
# bodies and routes). Not the engine's internals (the account, the settings, the metrics).
PATCH_IMPORTS = {
    "_engine", "_classify", "_taxonomy", "_provider", "_operations", "_guard", "_redact",
    "_spans", "_deferred", "_transport", "_content", "_sdk_answers", "_body", "_routes",
}  # fmt: skip
# Reason sets (and other vocabulary) defined in `_taxonomy` and nowhere else.
REASON_SETS = {
    "HARD_REASONS", "SOFT_REASONS", "SILENT_REASONS", "REASONS", "RETRYABLE_REASONS",
    "NON_RETRYABLE_CLIENT_ERRORS",
}  # fmt: skip
# Modules that may import a patch: the package's front and the programs built on it.
PATCH_USERS = {"__init__", "instrumentation", "cli", "demo", "doctor"}
# Longer files allowed: tables, where a split would only scatter one list.
TABLES = {"testing/_payloads.py", "_classify.py"}
MAX_LINES = 460


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(rel.parts)


def _failsight_imports(path: Path) -> set[str]:
    """Names of failsight modules `path` imports (`failsight._x` -> `_x`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "failsight":
                continue
            if len(parts) > 1:
                found.add(".".join(parts[1:]))
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "failsight":
                    found.add(".".join(parts[1:]) or "failsight")
    return found


def _imported_names(path: Path, module: str) -> set[str]:
    """Names `path` imports from `failsight.<module>` (from `failsight` itself for "")."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    wanted = f"failsight.{module}" if module else "failsight"
    return {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == wanted
        for alias in node.names
    }


def _module_level_names(path: Path) -> set[str]:
    """Names a module binds at its top level by assignment."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        found.update(t.id for t in targets if isinstance(t, ast.Name))
    return found


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_map_is_where_this_test_looks() -> None:
    names = {_module_name(p) for p in _sources()}
    assert set(PURE) | PATCHES | {"_engine", "_account", "_streams", "_transport"} <= names


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_modules_import_nothing_from_the_rest(module: str) -> None:
    imported = _failsight_imports(PACKAGE / f"{module}.py")
    assert imported <= PURE[module], f"{module} imports {sorted(imported - PURE[module])}"


def test_the_patches_never_import_each_other() -> None:
    for patch in PATCHES:
        other = (PATCHES - {patch}).pop()
        assert other not in _failsight_imports(PACKAGE / f"{patch}.py")


def test_only_the_front_imports_a_patch() -> None:
    for path in _sources():
        name = _module_name(path)
        top = name.split(".")[0]
        if top in PATCH_USERS or name in PATCHES:
            continue
        assert not (_failsight_imports(path) & PATCHES), f"{name} imports a patch"


def test_the_patches_use_the_engine_api_not_its_internals() -> None:
    for patch in sorted(PATCHES):
        imported = _failsight_imports(PACKAGE / f"{patch}.py")
        assert imported <= PATCH_IMPORTS, f"{patch} imports {sorted(imported - PATCH_IMPORTS)}"


def test_the_vocabulary_is_defined_in_the_taxonomy_only() -> None:
    taxonomy = _module_level_names(PACKAGE / "_taxonomy.py")
    assert taxonomy >= REASON_SETS
    # The upper-case names of the taxonomy: its constants and tables.
    vocabulary = {name for name in taxonomy if name.isupper()}
    for path in _sources():
        name = _module_name(path)
        if name == "_taxonomy" or name.startswith("testing"):
            continue  # the testing kit keeps its own copy: it imports nothing from the library
        clash = _module_level_names(path) & vocabulary
        assert not clash, f"{name} defines {sorted(clash)} (they live in _taxonomy)"


def test_only_classifier_callers_import_the_classifier() -> None:
    functions = {name for name in _functions(PACKAGE / "_classify.py") if not name.startswith("_")}
    for path in _sources():
        name = _module_name(path)
        imported = _imported_names(path, "_classify")
        assert imported <= functions, f"{name} takes {sorted(imported - functions)} from _classify"
        assert "_classify" not in _imported_names(path, ""), f"{name} imports the module whole"


def test_the_current_account_lives_with_the_account() -> None:
    assert "current_account" in _module_level_names(PACKAGE / "_account.py")
    for path in _sources():
        name = _module_name(path)
        if name != "_account":
            assert "current_account" not in _module_level_names(path), name
        if name != "_engine":
            assert "current_account" not in _imported_names(path, "_engine"), name
    for module in ("_scope", "_handle"):
        assert "current_account" in _imported_names(PACKAGE / f"{module}.py", "_account"), module


def test_the_engine_knows_no_patch_and_no_scope() -> None:
    for module in ("_engine", "_account", "_streams", "_transport", "_body"):
        imported = _failsight_imports(PACKAGE / f"{module}.py")
        assert not imported & (PATCHES | {"_scope", "_handle"}), (module, imported)


def test_testing_kit_imports_nothing_from_the_library() -> None:
    for path in sorted((PACKAGE / "testing").rglob("*.py")):
        imported = _failsight_imports(path)
        assert all(name.startswith("testing") for name in imported), (path.name, imported)


def test_no_module_grows_past_what_a_reader_holds() -> None:
    for path in _sources():
        rel = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if rel not in TABLES:
            assert lines <= MAX_LINES, f"{rel} has {lines} lines"


def test_the_checker_sees_imports() -> None:
    """The checker itself: a module importing a patch is seen as doing so."""
    assert "_sdk_patch" in _failsight_imports(PACKAGE / "__init__.py")
    assert "_redact" in _failsight_imports(PACKAGE / "_guard.py")
