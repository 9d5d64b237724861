"""The module map, checked from the source (`ast`), so that it cannot drift.

Imports flow one way: the pure modules (taxonomy and classifier, stream judge, operation
table, redaction, guard, deferred queue) import nothing from the rest; the engine knows no
patch; the two patches never import each other; `failsight.testing` imports nothing from the
library.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "failsight"

# module -> the failsight modules it may import (nothing else from failsight).
PURE = {
    "_taxonomy": set(),
    "_filters": {"_taxonomy"},
    "_classify": {"_taxonomy", "_filters"},
    "_stream_judge": {"_classify", "_taxonomy", "_filters"},
    "_operations": set(),
    "_redact": set(),
    "_guard": {"_redact"},
    "_deferred": set(),
}
PATCHES = {"_sdk_patch", "_http_patch"}
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
