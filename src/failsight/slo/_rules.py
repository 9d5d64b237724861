"""Prometheus rules from a Sloth `prometheus/v1` spec, as Sloth v0.16.0 writes them.

For users without Go: the same recording rules (the SLI error ratio per alert window, and the
30-day ratio averaged from the 5-minute one), the same metadata rules and the same
multi-window, multi-burn-rate page and ticket alerts (the Google SRE workbook's windows:
2% of the budget in 1 h or 5% in 6 h pages, 10% in 1 d or 3 d opens a ticket). The test suite
runs the real Sloth on several specs and compares.

Supported: event and raw SLIs, spec and SLO labels, alerting (either alert disabled), the
two built-in SLO periods (30d, 28d). Not supported: SLI plugins and SLO plugin chains.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from failsight.slo._spec import PERIODS, SPEC_VERSION
from failsight.slo._yaml import dump

__all__ = ["SLOTH_VERSION", "generate_rules", "prom_duration", "rules_yaml"]

SLOTH_VERSION: Final = "v0.16.0"
_HOUR: Final = 3600
# Sloth's default windows catalog (google-30d.yaml, google-28d.yaml): (budget percent,
# short window, long window) per alert, in seconds.
_WINDOWS: Final = {
    "page_quick": (2, 5 * 60, _HOUR),
    "page_slow": (5, 30 * 60, 6 * _HOUR),
    "ticket_quick": (10, 2 * _HOUR, 24 * _HOUR),
    "ticket_slow": (10, 6 * _HOUR, 72 * _HOUR),
}
_WINDOW_RE: Final = re.compile(r"{{ *\.window *}}")
_WHO: Final = "{{$labels.sloth_service}} {{$labels.sloth_slo}}"
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]\Z")


def prom_duration(seconds: int) -> str:
    """A duration as Prometheus writes it (model.Duration.String).

    >>> [prom_duration(s) for s in (300, 3600, 86400, 28 * 86400, 30 * 86400)]
    ['5m', '1h', '1d', '4w', '30d']
    """
    if seconds == 0:
        return "0s"
    out, left = "", seconds * 1000
    for unit, mult, exact in (
        ("y", 365 * 86400_000, True),
        ("w", 7 * 86400_000, True),
        ("d", 86400_000, False),
        ("h", 3600_000, False),
        ("m", 60_000, False),
        ("s", 1000, False),
        ("ms", 1, False),
    ):
        if exact and left % mult:
            continue
        if value := left // mult:
            out += f"{value}{unit}"
            left -= value * mult
    return out


def _go_float(value: float) -> str:
    """Go's shortest formatting of a float64 (`%v`, `%g` below 1e6)."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return repr(value)


def _go_decimal(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64): shortest digits, never an exponent."""
    text = repr(float(value))
    if "e" in text:
        mantissa, exponent = text.split("e")
        digits = mantissa.replace(".", "").lstrip("-")
        point = mantissa.lstrip("-").find(".") if "." in mantissa else len(mantissa.lstrip("-"))
        point += int(exponent)
        sign = "-" if value < 0 else ""
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        return sign + (
            digits + "0" * (point - len(digits))
            if point >= len(digits)
            else f"{digits[:point]}.{digits[point:]}"
        )
    return text.removesuffix(".0")


def _filter(labels: Mapping[str, str]) -> str:
    body = ", ".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _render(template: str, window: str) -> str:
    return _WINDOW_RE.sub(window, template)


def _check(spec: Mapping[str, Any], period: str) -> None:
    if spec.get("version") != SPEC_VERSION:
        raise ValueError(f'invalid spec version, should be "{SPEC_VERSION}"')
    if not spec.get("slos"):
        raise ValueError("at least one SLO is required")
    if period not in PERIODS:
        raise ValueError(f"the SLO period is one of {', '.join(PERIODS)}: {period}")
    if spec.get("slo_plugins"):
        raise ValueError("SLO plugins are Sloth's alone: generate these rules with Sloth")
    for slo in spec["slos"]:
        name = f"{spec.get('service')}-{slo.get('name')}"
        if not _NAME_RE.match(str(slo.get("name", ""))) or not _NAME_RE.match(name):
            raise ValueError(f"invalid SLO name: {name}")
        if not 0 < float(slo.get("objective", 0)) <= 100:
            raise ValueError(f"{name}: objective must >0 and <=100")
        sli = slo.get("sli") or {}
        if slo.get("plugins") or "plugin" in sli or ("events" in sli) == ("raw" in sli):
            raise ValueError(f"{name}: one events or raw SLI, and no plugins")


def _sli_rules(
    slo: Mapping[str, Any],
    ids: dict[str, str],
    labels: dict[str, str],
    windows: list[int],
    period_s: int,
) -> list[dict[str, Any]]:
    rules = []
    short = _WINDOWS["page_quick"][1]
    for seconds in [*windows, period_s]:
        window = prom_duration(seconds)
        if seconds == period_s:
            metric = f"slo:sli_error:ratio_rate{prom_duration(short)}"
            expr = (
                f"sum_over_time({metric}{_filter(ids)}[{window}])\n/ ignoring (sloth_window)\n"
                f"count_over_time({metric}{_filter(ids)}[{window}])\n"
            )
        elif "events" in slo["sli"]:
            events = slo["sli"]["events"]
            expr = _render(f"({events['error_query']})\n/\n({events['total_query']})\n", window)
        else:
            expr = _render(f"({slo['sli']['raw']['error_ratio_query']})", window)
        rules.append(
            {
                "record": f"slo:sli_error:ratio_rate{window}",
                "expr": expr,
                "labels": {**ids, "sloth_window": window, **labels},
            }
        )
    return rules


def _meta_rules(
    slo: Mapping[str, Any], ids: dict[str, str], labels: dict[str, str], period_s: int
) -> list[dict[str, Any]]:
    objective = float(slo["objective"])
    ratio = objective / 100
    where = _filter(ids)
    both = {**ids, **labels}

    def burn(window: str) -> str:
        return (
            f"slo:sli_error:ratio_rate{window}{where}\n"
            "/ on(sloth_id, sloth_slo, sloth_service) group_left\n"
            f"slo:error_budget:ratio{where}\n"
        )

    info = {
        **both,
        "sloth_version": SLOTH_VERSION,
        "sloth_mode": "cli-gen-prom",
        "sloth_spec": SPEC_VERSION,
        "sloth_objective": _go_decimal(objective),
    }
    return [
        {"record": "slo:objective:ratio", "expr": f"vector({_go_float(ratio)})", "labels": both},
        {
            "record": "slo:error_budget:ratio",
            "expr": f"vector(1-{_go_float(ratio)})",
            "labels": both,
        },
        {
            "record": "slo:time_period:days",
            "expr": f"vector({_go_float(period_s / 86400)})",
            "labels": both,
        },
        {
            "record": "slo:current_burn_rate:ratio",
            "expr": burn(prom_duration(_WINDOWS["page_quick"][1])),
            "labels": both,
        },
        {
            "record": "slo:period_burn_rate:ratio",
            "expr": burn(prom_duration(period_s)),
            "labels": both,
        },
        {
            "record": "slo:period_error_budget_remaining:ratio",
            "expr": f"1 - slo:period_burn_rate:ratio{where}",
            "labels": both,
        },
        {"record": "sloth_slo_info", "expr": "vector(1)", "labels": info},
    ]


def _alert_expr(where: str, budget: float, period_s: int, quick: str, slow: str) -> str:
    def pair(alert: str) -> list[str]:
        percent, short, long = _WINDOWS[alert]
        factor = _go_float(percent * (period_s / _HOUR) / 100 / (long / _HOUR))
        return [
            f"    max(slo:sli_error:ratio_rate{prom_duration(w)}{where} > ({factor} * "
            f"{_go_float(budget)})) without (sloth_window)"
            for w in (short, long)
        ]

    first, second = pair(quick), pair(slow)
    return (
        "\n".join(
            [
                "(",
                first[0],
                "    and",
                first[1],
                ")",
                "or",
                "(",
                second[0],
                "    and",
                second[1],
                ")",
            ]
        )
        + "\n"
    )


def _alert_rules(slo: Mapping[str, Any], ids: dict[str, str], period_s: int) -> list[Any]:
    alerting = slo.get("alerting") or {}
    budget = (100 - float(slo["objective"])) / 100
    rules = []
    for severity, quick, slow in (
        ("page", "page_quick", "page_slow"),
        ("ticket", "ticket_quick", "ticket_slow"),
    ):
        meta = alerting.get(f"{severity}_alert") or {}
        if meta.get("disable"):
            continue
        if not alerting.get("name"):
            raise ValueError(f"{ids['sloth_id']}: alert name is required")
        rules.append(
            {
                "alert": alerting["name"],
                "expr": _alert_expr(_filter(ids), budget, period_s, quick, slow),
                "labels": {
                    "sloth_severity": severity,
                    **(alerting.get("labels") or {}),
                    **(meta.get("labels") or {}),
                },
                "annotations": {
                    "title": f"({severity}) {_WHO} SLO error budget burn rate is too fast.",
                    "summary": f"{_WHO} SLO error budget burn rate is over expected.",
                    **(alerting.get("annotations") or {}),
                    **(meta.get("annotations") or {}),
                },
            }
        )
    return rules


def generate_rules(spec: Mapping[str, Any], period: str = "30d") -> dict[str, Any]:
    """The rule groups Sloth writes for `spec` (`sloth generate --default-slo-period`).

    >>> from failsight.slo._spec import SLOOptions, build_spec
    >>> groups = generate_rules(build_spec(SLOOptions()))["groups"]
    >>> [g["name"].rsplit("-failsight-", 1)[0] for g in groups][:3]
    ['sloth-slo-sli-recordings', 'sloth-slo-meta-recordings', 'sloth-slo-alerts']
    """
    _check(spec, period)
    period_s = PERIODS[period] * 86400
    windows = sorted({s for _, short, long in _WINDOWS.values() for s in (short, long)})
    groups: list[dict[str, Any]] = []
    for slo in spec["slos"]:
        sloth_id = f"{spec['service']}-{slo['name']}"
        ids = {"sloth_id": sloth_id, "sloth_service": spec["service"], "sloth_slo": slo["name"]}
        labels = {**(spec.get("labels") or {}), **(slo.get("labels") or {})}
        groups.append(
            {
                "name": f"sloth-slo-sli-recordings-{sloth_id}",
                "rules": _sli_rules(slo, ids, labels, windows, period_s),
            }
        )
        groups.append(
            {
                "name": f"sloth-slo-meta-recordings-{sloth_id}",
                "rules": _meta_rules(slo, ids, labels, period_s),
            }
        )
        if alerts := _alert_rules(slo, ids, period_s):
            groups.append({"name": f"sloth-slo-alerts-{sloth_id}", "rules": alerts})
    return {"groups": groups}


def rules_yaml(spec: Mapping[str, Any], period: str = "30d") -> str:
    """The rules as a Prometheus rule file.

    >>> from failsight.slo._spec import SLOOptions, build_spec
    >>> "slo:sli_error:ratio_rate5m" in rules_yaml(build_spec(SLOOptions()))
    True
    """
    header = (
        f"# Generated by failsight slo: the rules Sloth ({SLOTH_VERSION}) generates for this\n"
        f"# spec (SLO period {period}). Regenerate rather than edit.\n"
    )
    return header + dump(generate_rules(spec, period))
