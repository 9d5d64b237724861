"""What a check answers: a verdict, a one-line finding and a one-line fix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Verdict = Literal["ok", "warn", "fail", "skip"]

VERDICTS: Final[tuple[Verdict, ...]] = ("ok", "warn", "fail", "skip")
# Exit status per worst verdict: 0 all ok, 1 any warn, 2 any fail; a skipped check counts as ok.
_EXIT: Final[Mapping[Verdict, int]] = {"ok": 0, "skip": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Check:
    """One check's answer. ``details`` holds the measured values (JSON-ready)."""

    id: str
    group: str
    verdict: Verdict
    finding: str
    fix: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


def ok(id: str, group: str, finding: str, fix: str = "", **details: Any) -> Check:
    return Check(id, group, "ok", finding, fix, details)


def warn(id: str, group: str, finding: str, fix: str, **details: Any) -> Check:
    return Check(id, group, "warn", finding, fix, details)


def fail(id: str, group: str, finding: str, fix: str, **details: Any) -> Check:
    return Check(id, group, "fail", finding, fix, details)


def skip(id: str, group: str, finding: str) -> Check:
    return Check(id, group, "skip", finding, "")


def exit_status(checks: Iterable[Check]) -> int:
    """0 when every check is ok (or skipped), 1 when any warns, 2 when any fails."""
    return max((_EXIT[check.verdict] for check in checks), default=0)
