"""The screen and the `--json` document.

What the server sent was masked as it arrived (`_probe`); here every line and every string is
made printable (a lone surrogate or an escape sequence is spelled out, never sent to the
terminal), and the doctor's own words are left as written.

JSON schema (``"schema": "failsight.doctor/1"``)::

    {
      "schema": "failsight.doctor/1",
      "base_url": str,
      "deadline_s": float | null,        # the whole run's bound (--deadline)
      "exit_status": 0 | 1 | 2,          # 0 all ok, 1 any warn, 2 any fail
      "summary": {"ok": int, "warn": int, "fail": int, "skip": int},
      "checks": [
        {"id": str,                      # e.g. "text.chat", "video.job"
         "group": "key" | "text" | "image" | "video",
         "verdict": "ok" | "warn" | "fail" | "skip",
         "finding": str,                 # one line
         "fix": str,                     # one line, "" when nothing to do
         "details": {str: any}}          # measured values: status, finish_reason, ...
      ],
      "classes": {str: int},             # the recorded requests, by failure class/reason
      "series": [                        # what failsight's instrumentation recorded of them
        {"name": str,                    # genai_requests_total, genai_failures_total, ...
         "labels": {str: str},
         "value": float}
      ]
    }
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from failsight._redact import remember_secret

from ._model import VERDICTS, Check, exit_status
from ._recorded import render_series
from ._secret import printable, public_url, shown
from ._taxonomy_view import render_classes

__all__ = ["SCHEMA", "render_json", "render_text", "to_document"]

SCHEMA = "failsight.doctor/1"
_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def protect(key: str | None) -> None:
    """Remember the key (raw and stripped) so that failsight's own log lines never show it
    (the doctor's output masks it where the server's words arrive, whatever its length).

    >>> protect("sk-doctor-example-0000")
    """
    if key:
        bare = key.replace("\r", "").replace("\n", "")  # as the checks send a pasted key
        for form in {key, key.strip(), key.strip().strip("\"'").strip(), bare.strip()}:
            remember_secret(form)


_ITEMS = 50  # of a list or object in a check's details (a server's `usage` may hold anything)
_CHARACTERS = 1000  # of a string there


def _bounded(value: Any) -> Any:
    """A check's measured values, bounded: what a server sent stays a few lines of JSON."""
    if isinstance(value, str):
        return shown(value, _CHARACTERS)
    if isinstance(value, Mapping):
        items = list(value.items())[:_ITEMS]
        return {shown(k, 100): _bounded(v) for k, v in items}
    if isinstance(value, (list, tuple)):
        return [_bounded(item) for item in value[:_ITEMS]]
    return value


def _printable(value: Any) -> Any:
    """Every string in a JSON-ready value (keys too) made printable."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, Mapping):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(item) for item in value]
    return value


def to_document(
    checks: Sequence[Check],
    base_url: str,
    classes: Mapping[str, int] | None = None,
    series: Sequence[Mapping[str, Any]] = (),
    *,
    deadline_s: float | None = None,
) -> dict[str, Any]:
    """The `--json` document (see the module's schema), every string printable.

    >>> to_document([], "http://127.0.0.1:9/v1")["exit_status"]
    0
    """
    document: dict[str, Any] = _printable({
        "schema": SCHEMA,
        "base_url": public_url(base_url),
        "deadline_s": deadline_s,
        "exit_status": exit_status(checks),
        "summary": {v: sum(1 for c in checks if c.verdict == v) for v in VERDICTS},
        "checks": [
            {
                "id": c.id,
                "group": c.group,
                "verdict": c.verdict,
                "finding": c.finding,
                "fix": c.fix,
                "details": _bounded(c.details),
            }
            for c in checks
        ],
        "classes": dict(classes or {}),
        "series": [dict(row) for row in series],
    })  # fmt: skip
    return document


def render_json(
    checks: Sequence[Check],
    base_url: str,
    classes: Mapping[str, int] | None = None,
    series: Sequence[Mapping[str, Any]] = (),
    *,
    deadline_s: float | None = None,
) -> str:
    """`to_document` as JSON text, ASCII only (any terminal or pipe can take it)."""
    document = to_document(checks, base_url, classes, series, deadline_s=deadline_s)
    return json.dumps(document, indent=2, default=lambda value: printable(str(value)))


def render_text(
    checks: Sequence[Check],
    base_url: str,
    classes: Mapping[str, int] | None = None,
    series: Sequence[Mapping[str, Any]] | None = None,
    *,
    deadline_s: float | None = None,
) -> str:
    """The screen: one line per check (and its fix), the summary, the recorded series.

    >>> render_text([], "http://127.0.0.1:9/v1", deadline_s=60).splitlines()[0]
    'failsight doctor: http://127.0.0.1:9/v1 (at most 60 s)'
    """
    bound = f" (at most {deadline_s:g} s)" if deadline_s is not None else ""
    lines = [f"failsight doctor: {public_url(base_url)}{bound}", ""]
    for check in checks:
        lines.append(f"{_MARK[check.verdict]}  {check.id:<16} {check.finding}")
        if check.fix and check.verdict in ("warn", "fail"):
            lines.append(f"{'':6}{'':16} fix: {check.fix}")
        elif check.fix:
            lines.append(f"{'':6}{'':16} note: {check.fix}")
    counts = {v: sum(1 for c in checks if c.verdict == v) for v in VERDICTS}
    lines += [
        "",
        f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail, "
        f"{counts['skip']} skipped; exit status {exit_status(checks)}",
        *render_classes(dict(classes or {})),
        *(render_series([dict(row) for row in series]) if series is not None else []),
    ]
    return "\n".join(printable(line) for line in lines)
