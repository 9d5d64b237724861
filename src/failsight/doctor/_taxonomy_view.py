"""The failure classes of the doctor's requests, as failsight's instrumentation recorded them.

Read from the series the screen shows below them, not judged a second time: one verdict per
request, the same on both (a `--validate` call that fails is `silent` in each). Requests to
routes failsight does not record (`GET /models`) are in neither.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["classes_of", "render_classes"]


def classes_of(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """``{"none": 5, "soft/length": 1}``: `genai_requests_total` by failure class, a failed
    class split by the reasons `genai_failures_total` gives it.

    >>> classes_of([
    ...     {"name": "genai_requests_total", "labels": {"failure_class": "none"}, "value": 2.0},
    ...     {"name": "genai_requests_total", "labels": {"failure_class": "soft"}, "value": 1.0},
    ...     {"name": "genai_failures_total",
    ...      "labels": {"failure_class": "soft", "reason": "length"}, "value": 1.0},
    ... ])
    {'none': 2, 'soft/length': 1}
    """
    requests: Counter[str] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    for row in rows:
        labels = row["labels"]
        if row["name"] == "genai_requests_total":
            requests[labels.get("failure_class", "")] += int(row["value"])
        elif row["name"] == "genai_failures_total":
            failures[(labels.get("failure_class", ""), labels.get("reason", ""))] += int(
                row["value"]
            )
    counts: Counter[str] = Counter()
    for failure_class, total in requests.items():
        split = {r: n for (c, r), n in failures.items() if c == failure_class and r}
        for reason, count in split.items():
            counts[f"{failure_class}/{reason}"] += count
        if total > sum(split.values()):
            counts[failure_class] += total - sum(split.values())
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def render_classes(counts: dict[str, int]) -> list[str]:
    if not counts:
        return []
    total = sum(counts.values())
    shown = ", ".join(f"{name} {count}" for name, count in counts.items())
    return [f"{total} requests as failsight classifies them: {shown}"]
