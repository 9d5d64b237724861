"""`failsight demo`'s workload options: the finite run's and the continuous run's.

The command line (`failsight.cli`) adds them to the `demo` parser and turns what
`workload_settings` refuses into its one-line error.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from ._schedule import Schedule

__all__ = ["add_workload_options", "workload_settings"]

FINITE = (("--rounds", "rounds", 4), ("--async-requests", "async_requests", 60))


def _above_zero(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not (math.isfinite(number) and number > 0):  # nan never ends a run; 0 never starts one
        raise argparse.ArgumentTypeError(f"must be a finite number above 0: {value!r}")
    return number


def add_workload_options(demo: argparse.ArgumentParser, whole_number: Any) -> None:
    """Add the finite run's --rounds/--async-requests (of type `whole_number`) and the
    continuous run's options to the `demo` parser.

    >>> add_workload_options(argparse.ArgumentParser(), int)
    """
    finite = demo.add_argument_group("finite run (the default)")
    # Not given is None, so the continuous run can refuse them; the defaults apply otherwise.
    finite.add_argument(
        "--rounds", type=whole_number, metavar="N", help="rounds of the 46-request mix (default 4)"
    )
    finite.add_argument(
        "--async-requests",
        type=whole_number,
        metavar="N",
        help="concurrent asyncio requests after the rounds (default 60)",
    )
    steady = demo.add_argument_group(
        "continuous run",
        "Steady traffic over several call sites, models and operations, with incidents, each "
        "at one call site in turn: a silent-failure burst, a content_filter spike, a 429 storm, "
        "a truncation (length) wave. An incident fills the last --incident-length seconds of "
        "each --incident-every seconds (by default the first starts after 5 minutes); the "
        "defaults give each alert time to fire (its 'for:' is 10 to 15 minutes) and to resolve "
        "before the next incident. Ctrl-C (or the end of --duration) prints the summary table.",
    )
    until = steady.add_mutually_exclusive_group()
    until.add_argument("--forever", action="store_true", help="run until Ctrl-C")
    until.add_argument("--duration", type=_above_zero, metavar="SECONDS", help="run this long")
    steady.add_argument(
        "--rate",
        type=_above_zero,
        default=4.0,
        metavar="PER_SECOND",
        help="requests per second, on average, jittered (default 4)",
    )
    steady.add_argument(
        "--incident-every",
        type=_above_zero,
        default=1380.0,
        metavar="SECONDS",
        help="one incident per this many seconds (default 1380: 23 minutes)",
    )
    steady.add_argument(
        "--incident-length",
        type=_above_zero,
        default=1080.0,
        metavar="SECONDS",
        help="how long each incident lasts, at the end of its --incident-every slot "
        "(default 1080: 18 minutes)",
    )


def workload_settings(args: argparse.Namespace) -> dict[str, Any]:
    """`run_demo`'s workload arguments from the parsed options; ValueError with the message
    for the user when they cannot run together.

    >>> workload_settings(argparse.Namespace(rounds=None, async_requests=None, forever=True,
    ...     duration=None, rate=4.0, incident_every=60.0, incident_length=30.0))["continuous"]
    True
    """
    continuous = bool(args.forever) or args.duration is not None
    for option, name, _ in FINITE:
        if continuous and getattr(args, name) is not None:
            raise ValueError(f"{option} is for the finite run, not --forever or --duration")
    if args.incident_length >= args.incident_every:
        raise ValueError(
            "--incident-length must be shorter than --incident-every: each slot starts with "
            "normal traffic"
        )
    rounds, async_count = (
        default if getattr(args, name) is None else getattr(args, name)
        for _, name, default in FINITE
    )
    return {
        "rounds": rounds,
        "async_count": async_count,
        "continuous": continuous,
        "duration": args.duration,
        "rate": args.rate,
        "schedule": Schedule(args.incident_every, args.incident_length),
    }
