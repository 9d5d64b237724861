"""SLO specs in Sloth's format (`prometheus/v1`) for failsight's metrics.

Two SLOs per scope (every call site, or one named call site): "generation quality" (a request
is good when its failure class is `none`; which classes are bad is a choice) and
"availability" (only hard failures are bad). Each SLO is kept per call site by grouping its
queries by `job` and `call_site`, so one spec gives every call site its own budget and alerts.

Minimum-traffic guard: a window counts only where the call site averaged at least
`min_requests` logical requests per 5 minutes over it. Below that the error ratio is absent:
no alert fires and the window adds nothing to the budget (one failed request at 3 a.m. is not
a page, and Sloth's 30-day ratio averages 5-minute ratios, which few requests make noisy).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from failsight._taxonomy import FAILURE_CLASSES, HARD, NONE
from failsight.slo._yaml import dump

__all__ = [
    "BAD_CLASSES", "PERIODS", "SLOOptions", "build_spec", "command_line", "spec_yaml",
]  # fmt: skip

SPEC_VERSION: Final = "prometheus/v1"
# Sloth's built-in SLO periods (its default alert windows catalog), in days.
PERIODS: Final = {"30d": 30, "28d": 28}
BAD_CLASSES: Final = tuple(c for c in FAILURE_CLASSES if c != NONE)
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]\Z")
_WHERE: Final = "job, call_site"


@dataclass(frozen=True)
class SLOOptions:
    """What `failsight slo` asks: objectives in percent, the classes that count as bad.

    >>> SLOOptions(objective=99.5, call_sites=(("extract", None),)).objective
    99.5
    """

    objective: float = 99.0
    availability: float | None = 99.5
    call_sites: tuple[tuple[str, float | None], ...] = ()
    bad: tuple[str, ...] = BAD_CLASSES
    period: str = "30d"
    min_requests: int = 10
    namespace: str = "genai"
    service: str = "failsight"
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for value in (self.objective, self.availability, *(o for _, o in self.call_sites)):
            if value is not None and not 0 < value < 100:
                raise ValueError(f"an objective is a percentage above 0 and below 100: {value}")
        unknown = [c for c in self.bad if c not in BAD_CLASSES]
        if unknown or not self.bad:
            raise ValueError(f"bad classes are some of {', '.join(BAD_CLASSES)}: {self.bad}")
        if self.period not in PERIODS:
            raise ValueError(f"the SLO period is one of {', '.join(PERIODS)}: {self.period}")
        if self.min_requests < 1:
            raise ValueError(f"min_requests must be 1 or more: {self.min_requests}")
        if any(not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key) for key in self.labels):
            raise ValueError(f"label names match [a-zA-Z_][a-zA-Z0-9_]*: {list(self.labels)}")
        if not _NAME_RE.match(self.service):
            raise ValueError(f"the service name must match {_NAME_RE.pattern}: {self.service}")


def _slug(call_site: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", call_site).strip("-_.")
    return slug or "call-site"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _queries(options: SLOOptions, classes: Sequence[str], call_site: str | None) -> dict[str, str]:
    metric = f"{options.namespace}_requests_total"
    where = f"call_site={_quote(call_site)}" if call_site is not None else ""
    bad = ", ".join(filter(None, [where, f'failure_class=~"{"|".join(classes)}"']))
    every = f"{metric}{{{where}}}" if where else metric
    total = f"sum by ({_WHERE}) (rate({every}[{{{{.window}}}}]))"
    return {
        "error_query": (
            f"sum by ({_WHERE}) (rate({metric}{{{bad}}}[{{{{.window}}}}]))\nor\n0 * {total}"
        ),
        "total_query": f"{total}\n>= {options.min_requests} / 300",
    }


def _runbook(kind: str) -> str:
    first = (
        '1. Open the "Error budget" row of the "Call-site drill-down" dashboard for this call '
        "site: the burn rate per window says whether it is a sudden spike or a slow leak, and "
        '"Failures by reason" on the overview says which failures spend the budget.'
    )
    if kind == "quality":
        middle = [
            "2. hard (HTTP errors, timeouts): follow GenAIHardFailureRatioHigh's runbook; "
            "soft (content_filter, length): rephrase the prompt, raise max_tokens or shorten "
            "the prompt; silent (a validator rejected the output): log the full output when "
            "validation fails and fix the prompt or the validator.",
        ]
    else:
        middle = [
            "2. The reason label says which fix applies: rate_limited (429): back off and "
            "check the quota; 5xx, timeout, connection: check the provider's status page and "
            "fail over to another provider or model; 4xx: fix the request.",
        ]
    last = [
        "3. If a deploy started it (a prompt, model or SDK change), roll it back first.",
        "4. If this call site never met the objective, the objective is wrong, not the call "
        "site: change it in the SLO spec and regenerate the rules (failsight slo or Sloth).",
    ]
    return "\n".join([first, *middle, *last])


def _alerting(options: SLOOptions, kind: str, classes: Sequence[str]) -> dict[str, Any]:
    days = PERIODS[options.period]
    what = (
        f"end with a {', '.join(classes)} failure"
        if len(classes) > 1
        else f"end with a {classes[0]} failure"
    ).replace(", " + classes[-1], " or " + classes[-1])
    name = "GenAIQualityBudgetBurn" if kind == "quality" else "GenAIAvailabilityBudgetBurn"
    where = "{{ $labels.call_site }} (job {{ $labels.job }})"
    page = (
        f"Requests from {where} {what} fast enough to spend 2% of the {days}-day error budget "
        f"in an hour or 5% in six hours: {{{{ $value | humanizePercentage }}}} failed over the "
        "last 5 or 30 minutes."
    )
    ticket = (
        f"Requests from {where} {what} fast enough to spend 10% of the {days}-day error "
        f"budget in a day or in three days: {{{{ $value | humanizePercentage }}}} failed over "
        "the last 2 or 6 hours."
    )
    return {
        "name": name,
        "annotations": {"runbook": _runbook(kind)},
        "page_alert": {
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": f"{kind} error budget burning fast at {{{{ $labels.call_site }}}}",
                "description": page,
            },
        },
        "ticket_alert": {
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"{kind} error budget burning at {{{{ $labels.call_site }}}}",
                "description": ticket,
            },
        },
    }


def _slo(options: SLOOptions, kind: str, objective: float, call_site: str | None) -> dict[str, Any]:
    classes = options.bad if kind == "quality" else (HARD,)
    name = f"generation-{kind}" + (f"-{_slug(call_site)}" if call_site is not None else "")
    scope = f"call site {call_site}" if call_site is not None else "each call site"
    good = "no failure" if kind == "quality" else "no hard failure"
    return {
        "name": name,
        "objective": objective,
        "description": (
            f"{objective:g}% of the logical requests of {scope} end with {good} "
            f"(bad: failure_class {', '.join(classes)}), per job and call site."
        ),
        "sli": {"events": _queries(options, classes, call_site)},
        "alerting": _alerting(options, kind, classes),
    }


def build_spec(options: SLOOptions) -> dict[str, Any]:
    """The Sloth `prometheus/v1` spec for `options`, as a mapping.

    >>> spec = build_spec(SLOOptions())
    >>> [slo["name"] for slo in spec["slos"]]
    ['generation-quality', 'generation-availability']
    """
    scopes: list[tuple[str | None, float | None]] = list(options.call_sites) or [(None, None)]
    slos = [
        _slo(options, "quality", objective or options.objective, site) for site, objective in scopes
    ]
    if options.availability is not None:
        slos += [_slo(options, "availability", options.availability, site) for site, _ in scopes]
    names = [slo["name"] for slo in slos]
    if len(set(names)) != len(names):
        raise ValueError(f"two call sites give the same SLO name: {names}")
    spec: dict[str, Any] = {"version": SPEC_VERSION, "service": options.service}
    if options.labels:
        spec["labels"] = dict(options.labels)
    spec["slos"] = slos
    return spec


def command_line(options: SLOOptions) -> str:
    """The `failsight slo` command that writes the spec for `options`.

    >>> command_line(SLOOptions(objective=99.5, call_sites=(("extract", 99.9),)))
    'failsight slo --objective 99.5 --call-site extract=99.9'
    """
    default = SLOOptions()
    words = ["failsight", "slo"]
    if options.objective != default.objective:
        words += ["--objective", f"{options.objective:g}"]
    if options.availability is None:
        words += ["--no-availability"]
    elif options.availability != default.availability:
        words += ["--availability", f"{options.availability:g}"]
    for site, objective in options.call_sites:
        words += ["--call-site", site + (f"={objective:g}" if objective is not None else "")]
    if options.bad != default.bad:
        words += ["--bad", ",".join(options.bad)]
    for key, value in options.labels.items():
        words += ["--label", f"{key}={value}"]
    for flag, attr in (("--window", "period"), ("--min-requests", "min_requests"),
                       ("--namespace", "namespace"), ("--service", "service")):  # fmt: skip
        if getattr(options, attr) != getattr(default, attr):
            words += [flag, str(getattr(options, attr))]
    return " ".join(shlex.quote(word) for word in words)


def spec_yaml(options: SLOOptions) -> str:
    """The spec as a file to keep in a repository, with how to turn it into rules.

    >>> spec_yaml(SLOOptions()).splitlines()[1]
    '# written by: failsight slo'
    """
    period = "" if options.period == "30d" else f" --default-slo-period {options.period}"
    header = [
        "# failsight SLOs in Sloth's format (prometheus/v1): error budgets per call site,",
        f"# written by: {command_line(options)}",
        "# Prometheus rules from it, with Sloth, or without Go (the same rules):",
        f"#   sloth generate{period} --input THIS_FILE --out failsight-slo-rules.yml",
        f"#   {command_line(options)} --rules > failsight-slo-rules.yml",
        f"# SLO period {options.period}. Each SLO is kept per job and call site. A window counts",
        f"# only where the call site averaged at least {options.min_requests} requests per 5 "
        "minutes over it:",
        "# below that no alert fires and the window adds nothing to the budget.",
    ]
    return "\n".join(header) + "\n" + dump(build_spec(options))
