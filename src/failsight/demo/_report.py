"""The demo's report: the summary table of what failsight recorded, progress bar, span counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from prometheus_client import CollectorRegistry


def progress_bar(stream: TextIO) -> Callable[[int, int], None]:
    width = 30
    shown = [-1]

    def show(done: int, total: int) -> None:
        filled = width * done // max(total, 1)
        if filled == shown[0] and done < total:
            return  # redraw only when the bar moves
        shown[0] = filled
        bar = "#" * filled + "." * (width - filled)
        stream.write(f"\r  [{bar}] {done}/{total} requests")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


def _samples(registry: CollectorRegistry, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name
    ]


def render_table(registry: CollectorRegistry, namespace: str = "genai") -> str:
    """A plain-text summary of what failsight recorded in `registry`."""
    lines: list[str] = []

    def section(title: str, rows: Sequence[tuple[str, float]]) -> None:
        lines.append(title)
        if not rows:
            lines.append("  (none)")
        width = max((len(label) for label, _ in rows), default=0)
        for label, value in rows:
            lines.append(f"  {label.ljust(width)}  {value:>8.0f}")
        lines.append("")

    def totals(metric: str, key: Callable[[dict[str, str]], str]) -> dict[str, float]:
        sums: dict[str, float] = {}
        for labels, value in _samples(registry, f"{namespace}_{metric}"):
            sums[key(labels)] = sums.get(key(labels), 0.0) + value
        return sums

    requests = totals("requests_total", lambda labels: labels["failure_class"])
    rows = [(cls, requests[cls]) for cls in ("none", "hard", "soft", "silent") if cls in requests]
    section(f"Logical requests: {sum(requests.values()):.0f}", rows)
    failures = totals(
        "failures_total", lambda labels: f"{labels['failure_class']:<6}  {labels['reason']}"
    )
    section("Failures by class and reason", sorted(failures.items(), key=lambda kv: -kv[1]))
    retries = totals("retries_total", lambda labels: labels["reason"])
    section("Retries by reason", sorted(retries.items(), key=lambda kv: -kv[1]))
    section("Tokens by type", sorted(totals("tokens_total", lambda lb: lb["token_type"]).items()))
    videos = totals("video_jobs_total", lambda labels: labels["status"])
    section("Video jobs by outcome", sorted(videos.items()))
    wasted = totals(
        "wasted_tokens_total",
        lambda labels: f"{labels['failure_class']:<6}  {labels['reason']}"
        if labels["token_type"] in ("input", "output") else "",
    )  # fmt: skip
    wasted.pop("", None)  # reasoning and cached input are parts of output and input
    section(
        "Wasted tokens (input + output) by class and reason",
        sorted(wasted.items(), key=lambda kv: -kv[1]),
    )
    filters = totals(
        "content_filter_total",
        lambda labels: f"{labels['category']}  {labels['stage']}  {labels['severity']}",
    )
    section("Content filters by category, stage, severity", sorted(filters.items()))
    spent = sum(totals("cost_usd_total", lambda labels: "").values())
    lost = sum(totals("wasted_cost_usd_total", lambda labels: "").values())
    if spent:
        lines.append(f"Spend: ${spent:.6f} in all, ${lost:.6f} wasted ({lost / spent:.0%})")
    else:
        lines.append("Spend: not priced (install failsight[prices], or configure(prices=...))")
    return "\n".join(lines).rstrip() + "\n"


def span_summary() -> tuple[Any, Callable[[], str]]:
    """A span processor counting spans by kind and status, for the console summary."""
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

    counts: Counter[str] = Counter()

    class Counting(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            counts[f"{span.kind.name.lower()} spans, status {span.status.status_code.name}"] += 1

    def summary() -> str:
        return "\n".join(f"  {key}: {value}" for key, value in sorted(counts.items()))

    return Counting(), summary
