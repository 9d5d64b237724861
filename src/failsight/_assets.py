"""The operational files that ship inside the wheel, and `failsight assets DIR` that writes them.

The repository keeps one copy of each: ``dashboards/`` (Grafana dashboards and provisioning,
Prometheus alert and recording rules with their promtool unit tests), ``deploy/`` (the
docker-compose stack) and ``otel-collector.yaml``. The wheel build copies them into the
package as ``failsight/assets/`` (hatch ``force-include`` in pyproject.toml); from a source
checkout they are read where they are. Written out, they keep the repository layout, so the
relative paths between them (compose mounts, promtool ``rule_files``) still hold.
"""

from __future__ import annotations

import contextlib
import os
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

    Nothing is ever written outside `directory`: a symbolic link inside it is not followed.
    Before anything is written, an existing file that differs raises ChangedFilesError, and
    so does a link where a file goes; with `overwrite`, both are replaced (the link itself,
    never what it points to). A link where a directory goes is refused either way. Each
    file is written beside its place and renamed into it.

    >>> import tempfile
    >>> written = write_assets(Path(tempfile.mkdtemp()), "myapp")
    >>> any(path.name == "failsight-alerts.yml" for path in written)
    True
    """
    if not _NAMESPACE_RE.match(namespace):
        raise ValueError(f"namespace must match [a-zA-Z_][a-zA-Z0-9_]*, got {namespace!r}")
    planned: list[tuple[str, bytes]] = []
    for relative, content in asset_files():
        if namespace != DEFAULT_NAMESPACE:
            content = rewrite_namespace(content.decode("utf-8"), namespace).encode("utf-8")
        planned.append((relative, content))
    _check_in_the_way(directory, planned, overwrite)
    directory.mkdir(parents=True, exist_ok=True)  # DIR itself may be a link: the user named it
    written: list[Path] = []
    for relative, content in planned:
        try:
            _write_inside(directory, relative, content)
        except OSError as exc:  # named by the file meant, not a descriptor-relative name
            exc.filename = str(directory / relative)
            raise
        written.append(directory / relative)
    return written


def _check_in_the_way(directory: Path, planned: list[tuple[str, bytes]], overwrite: bool) -> None:
    """Refuse, before writing anything, links (where a directory goes, or where a file goes
    without `overwrite`) and, without `overwrite`, existing files that differ."""
    links: list[str] = []
    clashes: list[Path] = []
    seen: set[Path] = set()
    for relative, content in planned:
        *parents, _ = relative.split("/")
        at = directory
        for part in parents:
            at = at / part
            if at not in seen and at.is_symlink():
                links.append(
                    f"{at} is a symbolic link; failsight assets writes only inside {directory} "
                    "and follows no link there: remove it or choose another DIR"
                )
            seen.add(at)
        path = directory / relative
        if path.is_symlink():
            if not overwrite:
                links.append(
                    f"{path} is a symbolic link; failsight assets writes only inside "
                    f"{directory}: --force replaces the link itself, never what it points to"
                )
        elif not overwrite and path.is_file() and path.read_bytes() != content:
            clashes.append(path)
    if links:
        more = f" (and {len(links) - 1} more)" if len(links) > 1 else ""
        raise ChangedFilesError(f"{links[0]}{more}")
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise ChangedFilesError(f"{clashes[0]} exists and differs{more}; --force overwrites")


_NO_FOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY: Final = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NO_FOLLOW


def _write_inside(directory: Path, relative: str, content: bytes) -> None:
    """Write one file at `relative` under `directory` through directory descriptors opened
    without following links, so a link swapped in after the check is refused (ELOOP or
    ENOTDIR), and renamed into place, which replaces a link or hard link, never its target."""
    *parents, name = relative.split("/")
    fds = [os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))]
    try:
        for part in parents:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=fds[-1])
            fds.append(os.open(part, _DIRECTORY, dir_fd=fds[-1]))
        temporary = f".{name}.failsight-{os.getpid()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW
        out = os.open(temporary, flags, 0o666, dir_fd=fds[-1])
        try:
            with os.fdopen(out, "wb") as stream:
                stream.write(content)
            os.replace(temporary, name, src_dir_fd=fds[-1], dst_dir_fd=fds[-1])
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=fds[-1])
            raise
    finally:
        for fd in fds:
            os.close(fd)
