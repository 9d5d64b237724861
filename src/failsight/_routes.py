"""The raw-HTTP patch's view of a request: which operation its path is, which model it asks.

Built from `_operations` (each operation's default routes) plus the user's
`instrument_http(routes=...)`. Indexed by the last fixed segment, so a path that is no AI
route costs one dictionary look-up. Pure: imports only the operation table and the taxonomy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_plus

from failsight._operations import DEFAULT_ROUTES, OPERATIONS, Operation
from failsight._taxonomy import UNKNOWN

__all__ = [
    "Route", "RouteTable", "build_table", "form_fields", "parse_request", "parse_route",
    "request_fields",
]  # fmt: skip

_MAX_TEXT: Final = 256  # bound on a job id or model name copied out of a request
_MAX_REQUEST_JSON: Final = 4 << 20  # request bodies parsed for `model`; larger ones are skipped
_MULTIPART_MODEL: Final = re.compile(
    rb'name="model"[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]{1,256})\r\n'
)
_FORM_MODEL: Final = re.compile(r"(?:^|&)model=([^&]{1,512})")
_PLACEHOLDER: Final = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}\Z")


@dataclass(frozen=True)
class Route:
    pattern: str
    segments: tuple[str | None, ...]  # None: a `{name}` segment
    method: str
    op: Operation
    id_at: int | None  # index of the job id segment (polls)


def parse_route(pattern: Any, kind: Any) -> Route:
    where = f"failsight.instrument_http: route {pattern!r}"
    if not isinstance(pattern, str):
        raise TypeError(f"{where}: a route is a path string such as '/v1/chat/completions'")
    if not pattern.startswith("/") or "?" in pattern or "#" in pattern or len(pattern) > 512:
        raise ValueError(f"{where} must be a URL path starting with '/', without query")
    segments: list[str | None] = []
    for part in pattern.rstrip("/")[1:].split("/"):
        if not part:
            raise ValueError(f"{where} has an empty segment")
        if "{" in part or "}" in part:
            if not _PLACEHOLDER.match(part):
                raise ValueError(f"{where}: a placeholder is a whole segment such as '{{id}}'")
            segments.append(None)
        else:
            segments.append(part)
    if segments[-1] is None and (len(segments) < 2 or segments[-2] is None):
        raise ValueError(f"{where} must end in a fixed segment, or in one '{{id}}' after one")
    if not isinstance(kind, str) or kind not in OPERATIONS:
        raise ValueError(
            f"{where}: unknown kind {kind!r}; use one of {', '.join(OPERATIONS)} "
            "(or None to drop a default route)"
        )
    op = OPERATIONS[kind]
    method = next(m for m, _ in op.routes)
    id_at = None
    if op.is_poll:
        id_at = max((i for i, s in enumerate(segments) if s is None), default=None)
    return Route(pattern, tuple(segments), method, op, id_at)


class RouteTable:
    """Routes indexed by their last fixed segment, so a non-matching path costs one lookup."""

    __slots__ = ("by_last", "by_parent")

    def __init__(self, routes: Mapping[str, str]) -> None:
        by_last: dict[str, list[Route]] = {}
        by_parent: dict[str, list[Route]] = {}
        for pattern, kind in routes.items():
            route = parse_route(pattern, kind)
            last = route.segments[-1]
            if last is None:
                by_parent.setdefault(route.segments[-2] or "", []).append(route)
            else:
                by_last.setdefault(last, []).append(route)

        def ordered(routes: list[Route]) -> tuple[Route, ...]:
            # Longest first: `/chat/completions` is tried before `/completions`.
            return tuple(sorted(routes, key=lambda r: -len(r.segments)))

        self.by_last = {key: ordered(value) for key, value in by_last.items()}
        self.by_parent = {key: ordered(value) for key, value in by_parent.items()}

    def candidates(self, path: str) -> tuple[Route, ...] | None:
        """Routes that `path` (a path or a URL without query) may match; None for most paths."""
        if path.endswith("/"):
            path = path[:-1]
        head, _, last = path.rpartition("/")
        routes = self.by_last.get(last)
        if routes is None and self.by_parent:
            routes = self.by_parent.get(head[head.rfind("/") + 1 :])
        return routes

    @staticmethod
    def match(method: str, path: str, routes: tuple[Route, ...]) -> tuple[Route, str | None] | None:
        """(route, job id from the path) of the first route matching `method` and `path`."""
        segments = path.rstrip("/").split("/")
        method = method.upper()
        for route in routes:
            count = len(route.segments)
            if route.method != method or len(segments) <= count:
                continue
            tail = segments[-count:]
            if all(
                (want == got) if want is not None else bool(got)
                for want, got in zip(route.segments, tail, strict=True)
            ):
                job_id = tail[route.id_at][:_MAX_TEXT] if route.id_at is not None else None
                return route, job_id
        return None


def build_table(routes: Any) -> RouteTable:
    if routes is None:
        return RouteTable(DEFAULT_ROUTES)
    if not isinstance(routes, Mapping):
        raise TypeError(
            "failsight.instrument_http: routes must be a mapping of path pattern to kind, "
            f"e.g. {{'/gateway/chat': 'chat'}}; got {type(routes).__name__}"
        )
    merged: dict[str, Any] = dict(DEFAULT_ROUTES)
    for pattern, kind in routes.items():
        if kind is None:
            merged.pop(pattern, None)
        else:
            merged[pattern] = kind
    return RouteTable(merged)


# ---------------------------------------------------------------------- request bodies


def request_fields(body: Any, content_type: Any) -> tuple[str, bool]:
    """(model, stream) of a request body: JSON, a multipart form or an urlencoded form."""
    model, stream, _ = parse_request(body, content_type)
    return model, stream


def parse_request(body: Any, content_type: Any) -> tuple[str, bool, dict[str, Any] | None]:
    """(model, stream, the decoded JSON object or None) of a request body (`request_fields`).

    >>> parse_request(b'{"model": "m", "tools": []}', "application/json")
    ('m', False, {'model': 'm', 'tools': []})
    """
    if isinstance(body, str):
        body = body.encode("utf-8", "replace")
    if not isinstance(body, (bytes, bytearray)) or not body:
        return UNKNOWN, False, None
    ctype = content_type.lower() if isinstance(content_type, str) else ""
    if ctype.startswith("multipart/"):
        found = _MULTIPART_MODEL.search(body)
        return (found.group(1).decode("utf-8", "replace") if found else UNKNOWN), False, None
    if ctype.startswith("application/x-www-form-urlencoded"):
        text = bytes(body[:65536]).decode("latin-1")
        form = _FORM_MODEL.search(text)
        return (unquote_plus(form.group(1))[:_MAX_TEXT] if form else UNKNOWN), False, None
    if len(body) > _MAX_REQUEST_JSON:
        return UNKNOWN, False, None
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):
        return UNKNOWN, False, None
    if not isinstance(fields, dict):
        return UNKNOWN, False, None
    model = fields.get("model")
    model = model[:_MAX_TEXT] if isinstance(model, str) and model else UNKNOWN
    return model, fields.get("stream") is True, fields


def form_fields(fields: Any) -> tuple[str, bool]:
    """(model, stream) of httpx multipart fields (an upload body is not read ahead)."""
    for field in fields or ():
        if getattr(field, "name", None) != "model":
            continue
        value = getattr(field, "value", None)
        if value is None:
            value = getattr(field, "file", None)  # `files={"model": (None, "gpt")}`
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value:
            return value[:_MAX_TEXT], False
    return UNKNOWN, False
