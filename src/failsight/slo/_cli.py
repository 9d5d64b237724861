"""`failsight slo`: a Sloth spec for your objectives, or the Prometheus rules themselves."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from failsight.slo._rules import rules_yaml
from failsight.slo._spec import BAD_CLASSES, PERIODS, SLOOptions, build_spec, spec_yaml


def _objective(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(f"a percentage above 0 and below 100: {text}")
    return value


def _call_site(text: str) -> tuple[str, float | None]:
    name, equals, objective = text.rpartition("=") if "=" in text else (text, "", "")
    if not name:
        raise argparse.ArgumentTypeError(f"NAME or NAME=OBJECTIVE: {text!r}")
    return name, _objective(objective) if equals else None


def _classes(text: str) -> tuple[str, ...]:
    classes = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in classes if c not in BAD_CLASSES]
    if unknown or not classes:
        raise argparse.ArgumentTypeError(f"a comma-separated list of {','.join(BAD_CLASSES)}")
    return classes


def _label(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"KEY=VALUE: {text!r}")
    return key, value


def add_slo_command(commands: Any) -> None:
    """Register `failsight slo` on the CLI's subcommands."""
    slo = commands.add_parser(
        "slo",
        help="write an SLO spec (Sloth's format) for your call sites, or its Prometheus rules",
        description=(
            "Write a Sloth spec (prometheus/v1) with a generation-quality SLO (a request is "
            "good when its failure class is none) and an availability SLO (hard failures "
            "only) per call site, with multi-window, multi-burn-rate page and ticket alerts. "
            "With --rules, write the Prometheus rules Sloth would generate from it."
        ),
    )
    slo.add_argument(
        "--objective",
        type=_objective,
        default=99.0,
        help="generation-quality objective in percent (default 99)",
    )
    slo.add_argument(
        "--availability",
        type=_objective,
        default=99.5,
        help="availability objective in percent (default 99.5)",
    )
    slo.add_argument("--no-availability", action="store_true", help="no availability SLO")
    slo.add_argument(
        "--call-site",
        action="append",
        type=_call_site,
        default=[],
        metavar="NAME[=OBJECTIVE]",
        help="an SLO of its own for this call site (repeatable); by default one SLO covers "
        "every call site, each with its own budget",
    )
    slo.add_argument(
        "--bad",
        type=_classes,
        default=BAD_CLASSES,
        metavar="CLASSES",
        help=f"failure classes that spend the quality budget (default {','.join(BAD_CLASSES)})",
    )
    slo.add_argument(
        "--window", choices=sorted(PERIODS), default="30d", help="the SLO period (default 30d)"
    )
    slo.add_argument(
        "--min-requests",
        type=int,
        default=10,
        metavar="N",
        help="a window counts where the call site averaged N requests per 5 "
        "minutes or more (default 10)",
    )
    slo.add_argument(
        "--namespace",
        default="genai",
        help="the metric namespace given to failsight.configure (default genai)",
    )
    slo.add_argument(
        "--service", default="failsight", help="Sloth's service name (default failsight)"
    )
    slo.add_argument(
        "--label",
        action="append",
        type=_label,
        default=[],
        metavar="KEY=VALUE",
        help="a label on every rule (repeatable; default none)",
    )
    slo.add_argument(
        "--rules", action="store_true", help="write the Prometheus rules instead of the spec"
    )
    slo.add_argument("--output", "-o", type=Path, help="the file to write (default stdout)")


def run_slo(args: argparse.Namespace) -> int:
    """`failsight slo`: print or write the spec (or its rules); 2 on options that clash."""
    try:
        options = SLOOptions(
            objective=args.objective,
            availability=None if args.no_availability else args.availability,
            call_sites=tuple(args.call_site),
            bad=tuple(args.bad),
            period=args.window,
            min_requests=args.min_requests,
            namespace=args.namespace,
            service=args.service,
            labels=dict(args.label),
        )
        text = rules_yaml(build_spec(options), options.period) if args.rules else spec_yaml(options)
    except ValueError as exc:
        print(f"failsight: error: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
