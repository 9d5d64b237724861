"""The operational files that ship inside the wheel, and `failsight assets DIR` that writes them.

The repository keeps one copy of each: ``dashboards/`` (Grafana dashboards and provisioning,
Prometheus alert and recording rules with their promtool unit tests), ``deploy/`` (the
docker-compose stack) and ``otel-collector.yaml``. The wheel build copies them into the
package as ``failsight/assets/`` (hatch ``force-include`` in pyproject.toml); from a source
checkout they are read where they are. Written out, they keep the repository layout, so the
relative paths between them (compose mounts, promtool ``rule_files``) still hold.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = ["ASSET_NAMES", "ChangedFilesError", "asset_files", "rewrite_namespace", "write_assets"]

# The top-level entries, in the repository and under failsight/assets/ in the wheel.
ASSET_NAMES: Final = ("dashboards", "deploy", "otel-collector.yaml")
DEFAULT_NAMESPACE: Final = "genai"
_NAMESPACE_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# `genai_` metric names and `genai:` recording-rule names; not `gen_ai.` span attributes,
# nor the `GenAI...` alert names, nor `genai` inside a longer word.
_PREFIX_RE: Final = re.compile(r"(?<![A-Za-z0-9_:])genai(?=[_:])")


class ChangedFilesError(Exception):
    """Files in the way differ from what would be written (and overwriting was not asked)."""


def _root() -> Traversable | Path:
    packaged = resources.files("failsight") / "assets"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2]  # src/failsight/_assets.py -> checkout
    if all((checkout / name).exists() for name in ASSET_NAMES):
        return checkout
    raise FileNotFoundError(
        "failsight's assets are missing from this installation (neither failsight/assets/ "
        "nor a source checkout); reinstall failsight"
    )


def _walk(node: Traversable | Path, relative: str) -> Iterator[tuple[str, bytes]]:
    if node.is_dir():
        for child in sorted(node.iterdir(), key=lambda entry: entry.name):
            if child.name.startswith(".") or child.name == "__pycache__":
                continue
            yield from _walk(child, f"{relative}/{child.name}")
    else:
        yield relative, node.read_bytes()


def asset_files() -> list[tuple[str, bytes]]:
    """Every shipped file as (path relative to the output directory, content), sorted.

    >>> paths = [path for path, _ in asset_files()]
    >>> "dashboards/rules/failsight-alerts.yml" in paths and "otel-collector.yaml" in paths
    True
    """
    root = _root()
    files: list[tuple[str, bytes]] = []
    for name in ASSET_NAMES:
        files.extend(_walk(root / name, name))
    return sorted(files)


def rewrite_namespace(text: str, namespace: str) -> str:
    """Replace the default metric prefix `genai_` (and `genai:` of recording rules).

    >>> rewrite_namespace('rate(genai_requests_total[5m]) > genai:requests:rate5m', "myapp")
    'rate(myapp_requests_total[5m]) > myapp:requests:rate5m'
    >>> rewrite_namespace("gen_ai.request.model GenAIRetryStorm", "myapp")
    'gen_ai.request.model GenAIRetryStorm'
    """
    if not _NAMESPACE_RE.match(namespace):
        raise ValueError(f"namespace must match [a-zA-Z_][a-zA-Z0-9_]*, got {namespace!r}")
    if namespace == DEFAULT_NAMESPACE:
        return text
    return _PREFIX_RE.sub(namespace, text)


def write_assets(
    directory: Path, namespace: str = DEFAULT_NAMESPACE, *, overwrite: bool = False
) -> list[Path]:
    """Write the shipped files under `directory`; return the paths written.

    Without `overwrite`, an existing file that differs raises ChangedFilesError before
    anything is written.
    """
    if not _NAMESPACE_RE.match(namespace):
        raise ValueError(f"namespace must match [a-zA-Z_][a-zA-Z0-9_]*, got {namespace!r}")
    planned: list[tuple[Path, bytes]] = []
    for relative, content in asset_files():
        if namespace != DEFAULT_NAMESPACE:
            content = rewrite_namespace(content.decode("utf-8"), namespace).encode("utf-8")
        planned.append((directory / relative, content))
    if not overwrite:
        clashes = [
            path for path, content in planned if path.exists() and path.read_bytes() != content
        ]
        if clashes:
            more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
            raise ChangedFilesError(f"{clashes[0]} exists and differs{more}; --force overwrites")
    for path, content in planned:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return [path for path, _ in planned]
