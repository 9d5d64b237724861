"""The screen and the `--json` document. Every line passes through the key mask.

JSON schema (``"schema": "failsight.doctor/1"``)::

    {
      "schema": "failsight.doctor/1",
      "base_url": str,
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
      "classes": {str: int},             # requests sent, by failsight's failure class/reason
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

from failsight._redact import mask_secrets, remember_secret

from ._model import VERDICTS, Check, exit_status
from ._recorded import render_series
from ._taxonomy_view import render_classes

__all__ = ["SCHEMA", "render_json", "render_text", "to_document"]

SCHEMA = "failsight.doctor/1"
_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def protect(key: str | None) -> None:
    """Remember the key (raw and stripped) so that no output line shows it."""
    if key:
        bare = key.replace("\r", "").replace("\n", "")  # as the checks send a pasted key
        for form in {key, key.strip(), key.strip().strip("\"'").strip(), bare.strip()}:
            remember_secret(form)


def _mask(text: str) -> str:
    return mask_secrets(text, limit=len(text) + 1)


def to_document(
    checks: Sequence[Check],
    base_url: str,
    classes: Mapping[str, int] | None = None,
    series: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "base_url": base_url,
        "exit_status": exit_status(checks),
        "summary": {v: sum(1 for c in checks if c.verdict == v) for v in VERDICTS},
        "checks": [
            {
                "id": c.id,
                "group": c.group,
                "verdict": c.verdict,
                "finding": c.finding,
                "fix": c.fix,
                "details": dict(c.details),
            }
            for c in checks
        ],
        "classes": dict(classes or {}),
        "series": [dict(row) for row in series],
    }


def render_json(
    checks: Sequence[Check],
    base_url: str,
    classes: Mapping[str, int] | None = None,
    series: Sequence[Mapping[str, Any]] = (),
) -> str:
    document = to_document(checks, base_url, classes, series)
    return _mask(json.dumps(document, indent=2, default=str))


def render_text(
    checks: Sequence[Check],
    base_url: str,
    classes: Mapping[str, int] | None = None,
    series: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    lines = [f"failsight doctor: {base_url}", ""]
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
    return "\n".join(_mask(line) for line in lines)
