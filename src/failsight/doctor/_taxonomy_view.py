"""The failure classes the doctor's own requests produced, as failsight classifies them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from failsight._classify import classify_result, classify_status

from ._probe import Reply

__all__ = ["classify_replies", "render_classes"]

_KIND = {
    "chat": "chat",
    "chat_tiny": "chat",
    "image": "image",
    "video_create": "video",
    "video_poll": "video",
}
_NO_ANSWER = {"timeout": "timeout", "connect": "connection", "tls": "connection"}


def _one(reply: Reply) -> tuple[str, str]:
    if reply.status is None:
        return "hard", _NO_ANSWER.get(reply.error_kind or "", "invalid_response")
    if reply.status >= 400:
        outcome = classify_status(reply.status, reply.headers, reply.body)
        return outcome.failure_class, outcome.reason or ""
    kind = _KIND.get(reply.probe)
    if kind is None:
        return "none", ""
    if reply.body is None:
        return "hard", "invalid_response"
    outcome = classify_result(reply.body, kind=kind)
    return outcome.failure_class, outcome.reason or ""


def classify_replies(replies: Sequence[Reply]) -> dict[str, int]:
    """``{"none": 5, "soft/length": 1, "hard/unauthorized": 2}`` over every request sent."""
    counts: Counter[str] = Counter()
    for reply in replies:
        failure_class, reason = _one(reply)
        counts[f"{failure_class}/{reason}" if reason else failure_class] += 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def render_classes(counts: dict[str, int]) -> list[str]:
    if not counts:
        return []
    total = sum(counts.values())
    shown = ", ".join(f"{name} {count}" for name, count in counts.items())
    return [f"{total} requests as failsight classifies them: {shown}"]
