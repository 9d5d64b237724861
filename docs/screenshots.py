"""Draw the dashboards' panels from real query results, into docs/img/*.png.

Runs `failsight demo --forever` (with incidents a minute apart) and a real Prometheus with
the shipped deploy/prometheus.yml and rules, as tests/test_dashboards_live.py does; after
the run, evaluates each panel's queries over it, the way Grafana would (variables at All),
and draws each dashboard row with matplotlib: one PNG per row. These are drawings of the
dashboards' own queries, not screenshots of Grafana.

Needs the `prometheus` binary and matplotlib (not a failsight dependency):

    python docs/screenshots.py [--duration 300] [--out docs/img]
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the live test's Grafana arithmetic and stack

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, PercentFormatter  # noqa: E402

from prom_harness import iter_panels, load_dashboards  # noqa: E402
from test_dashboards_live import (  # noqa: E402
    DEMO_JOB,
    Demo,
    GrafanaQuery,
    ShippedPrometheus,
    grafana_queries,
)

SCRAPE_S = 5
LEGEND_MAX = 8
DPI = 100


def rows(dashboard: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(row title, its panels) in the dashboard's order; panels above the first row: 'Summary'."""
    found: list[tuple[str, list[dict[str, Any]]]] = [("Summary", [])]
    for panel in iter_panels(dashboard["panels"]):
        if panel["type"] == "row":
            found.append((panel["title"], []))
        else:
            found[-1][1].append(panel)
    return [(title, panels) for title, panels in found if panels]


def legend(target: dict[str, Any], metric: dict[str, str]) -> str:
    text = target.get("legendFormat") or ""
    if text and text != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m[1], ""), text)
    return ", ".join(f"{k}={v}" for k, v in sorted(metric.items())) or target["expr"][:40]


def unit_formatter(unit: str) -> Any:
    if unit == "percentunit":
        return PercentFormatter(1.0)
    suffix = {"reqps": " req/s", "s": " s", "currencyUSD": " $"}.get(unit, "")
    suffix = suffix or (" " + unit.split(":", 1)[1] if unit.startswith("count:") else "")
    return FuncFormatter(lambda value, _: f"{value:g}{suffix}")


def draw_timeseries(ax: Any, panel: dict[str, Any], results: list[Any], start: float) -> None:
    lines = []
    for target, result in results:
        threshold = target["expr"].startswith("vector(")
        for series in result:
            points = [(t - start, float(v)) for t, v in series["values"]]
            points = [(t, v) for t, v in points if math.isfinite(v)]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            name = "alert threshold" if threshold else legend(target, series["metric"])
            lines.append((max(ys), name, xs, ys, threshold))
    lines.sort(key=lambda line: (not line[4], -line[0]))
    stacking = panel["fieldConfig"]["defaults"].get("custom", {}).get("stacking", {})
    if stacking.get("mode") in ("normal", "percent"):
        stack_lines(ax, [line for line in lines if not line[4]], stacking["mode"] == "percent")
        lines = [line for line in lines if line[4]]
    for index, (_, name, xs, ys, threshold) in enumerate(lines):
        style = {"color": "red", "linestyle": "--"} if threshold else {}
        label = name if index < LEGEND_MAX else None
        ax.plot([x / 60 for x in xs], ys, linewidth=1.2, label=label, **style)
    defaults = panel["fieldConfig"]["defaults"]
    drawn = defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode", "off") != "off"
    if drawn and not any(line[4] for line in lines):  # Grafana draws the threshold itself
        value = defaults["thresholds"]["steps"][-1]["value"]
        ax.axhline(value, color="red", linestyle="--", linewidth=1.2, label="alert threshold")
    ax.yaxis.set_major_formatter(unit_formatter(defaults.get("unit", "")))
    ax.set_xlabel("minutes into the demo", fontsize=8)
    ax.tick_params(labelsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, loc="upper left", framealpha=0.7)
    else:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", transform=ax.transAxes)


def stack_lines(ax: Any, lines: list[Any], percent: bool) -> None:
    """Grafana's stacked series (a missing point stacks as 0); `percent`: shares of the total."""
    times = sorted({x for line in lines for x in line[2]})
    if not times:
        return
    stacks = []
    for _, _, xs, ys, _ in lines:
        by_time = dict(zip(xs, ys, strict=True))
        stacks.append([by_time.get(t, 0.0) for t in times])
    if percent:
        totals = [sum(column) or 1.0 for column in zip(*stacks, strict=True)]
        stacks = [[v / total for v, total in zip(row, totals, strict=True)] for row in stacks]
    labels = [line[1] if index < LEGEND_MAX else None for index, line in enumerate(lines)]
    ax.stackplot([t / 60 for t in times], stacks, labels=labels, alpha=0.8)


def draw_stat(ax: Any, panel: dict[str, Any], results: list[Any]) -> None:
    values = [float(s["value"][1]) for _, result in results for s in result]
    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    value = values[0] if values else math.nan
    text = f"{value:.1%}" if unit == "percentunit" else f"{value:.2f}"
    ax.text(0.5, 0.45, text if values else "No data", ha="center", va="center", fontsize=22)
    ax.set_xticks([])
    ax.set_yticks([])


def evaluate(prom: ShippedPrometheus, query: GrafanaQuery, start: float, end: float) -> Any:
    if query.instant:
        return prom.query_at(query.expr, end)
    step = query.step_s
    return prom.query_range(query.expr, start // step * step, end // step * step, step)


def draw(prom: ShippedPrometheus, start: float, end: float, out: Path) -> list[Path]:
    written = []
    for name, dashboard in load_dashboards().items():
        queries = {q.where: q for q in grafana_queries(dashboard, end - start, SCRAPE_S)}
        for title, panels in rows(dashboard):
            shown = [p for p in panels if p["type"] in ("timeseries", "stat")][:4]
            if not shown:
                continue
            widths = [p["gridPos"]["w"] for p in shown]
            height = 2.2 if all(p["type"] == "stat" for p in shown) else 3.6
            fig, axes = plt.subplots(1, len(shown), figsize=(14, height), width_ratios=widths,
                                     squeeze=False)  # fmt: skip
            for ax, panel in zip(axes[0], shown, strict=True):
                results = []
                for target in panel["targets"]:
                    where = f"{dashboard['uid']}: {panel['title']} [{target['refId']}]"
                    results.append((target, evaluate(prom, queries[where], start, end)))
                ax.set_title(panel["title"], fontsize=9)
                if panel["type"] == "stat":
                    draw_stat(ax, panel, results)
                else:
                    draw_timeseries(ax, panel, results, start)
            fig.suptitle(f"{dashboard['title']}: {title}", fontsize=11, x=0.01, ha="left")
            fig.tight_layout()
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            path = out / f"{name.removesuffix('.json')}-{slug}.png"
            fig.savefig(path, dpi=DPI)
            plt.close(fig)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # Four incidents, 50 s each, one a minute and a quarter: all of them within 5 minutes.
    demo = Demo(rate=8, every_s=75, length_s=50)
    try:
        target = demo.wait_for(r"/metrics on http://(127\.0\.0\.1:\d+)/metrics", 60)[1]
        with ShippedPrometheus(target, SCRAPE_S) as prom:
            prom.wait_for(f'up{{job="{DEMO_JOB}"}} == 1', bool, timeout=30)
            start = time.time()
            print(f"running the demo for {args.duration:g} s ...", flush=True)
            time.sleep(args.duration)
            for path in draw(prom, start, time.time(), args.out):
                print(path)
    finally:
        demo.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
