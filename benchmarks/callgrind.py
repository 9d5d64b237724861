"""Instruction counts for the benchmarks, segment by segment, under valgrind's callgrind.

Callgrind counts the instructions a process runs (every thread): the same figure on every
run, whatever else the machine does, where CPU times on a shared or virtual machine wander.
The script re-runs itself under valgrind with `--segments`; there it calls `mark(label)`
before each measured segment and `done()` at the end. `--dump-before=getppid` starts a new
count at each `os.getppid()`, so each segment gets a dump file of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence

_labels: list[str] = []


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--instructions` for the user, `--segments` for the child run under valgrind."""
    parser.add_argument(
        "--instructions", action="store_true",
        help="count instructions under valgrind (the same on every run) instead of timing",
    )  # fmt: skip
    parser.add_argument("--segments", action="store_true", help=argparse.SUPPRESS)


def mark(label: str) -> None:
    """Start the segment `label` (in the child under valgrind)."""
    _labels.append(label)
    os.getppid()


def done() -> None:
    """End the last segment and hand the labels to the parent (the child's last line)."""
    os.getppid()
    print(json.dumps(_labels))


def count(script: str, args: Sequence[str]) -> list[tuple[str, int]]:
    """(label, instructions) of each segment of `script --segments *args` run under valgrind."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian package `valgrind`)")
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        child = subprocess.run(
            [
                "valgrind", "--tool=callgrind", "--dump-before=getppid",
                f"--callgrind-out-file={out}", sys.executable, script, "--segments", *args,
            ],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        labels = json.loads(child.stdout.strip().splitlines()[-1])
        # Dump 1 is the start-up before the first mark; segment i is dump i + 2.
        return [(label, _instructions(f"{out}.{i + 2}")) for i, label in enumerate(labels)]


def _instructions(path: str) -> int:
    with open(path) as dump:
        for line in dump:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise ValueError(f"no summary line in {path}")
