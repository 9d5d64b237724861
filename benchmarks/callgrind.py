"""Instruction counts for the benchmarks, segment by segment, under valgrind's callgrind.

Callgrind counts the instructions a process runs (every thread): the same figure on every
run, whatever else the machine does, where CPU times on a shared or virtual machine wander.
The script re-runs itself under valgrind with `--segments`; there it calls `mark(label)`
before each measured segment and `done()` at the end. `--dump-before=getppid` starts a new
count at each `os.getppid()`, so each segment gets a dump file of its own.

Start-up (imports cost billions of instructions, half a minute under callgrind) runs with
callgrind's instrumentation off where `callgrind_control` can switch it on: the first
`mark()` switches it on, so nothing before it is counted and the run is several times
faster. Counts are the same either way. The children run with `PYTHONHASHSEED=0`, so dict
and set orders, and with them the counts, repeat from run to run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

_labels: list[str] = []
_SWITCH_ON = "FAILSIGHT_BENCH_CALLGRIND_SWITCH_ON"  # set for the child: the first mark switches
_SWITCH_FAILED = "callgrind_control could not switch instrumentation on"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--instructions` for the user, `--segments` for the child run under valgrind."""
    parser.add_argument(
        "--instructions", action="store_true",
        help="count instructions under valgrind (the same on every run) instead of timing",
    )  # fmt: skip
    parser.add_argument("--segments", action="store_true", help=argparse.SUPPRESS)


def mark(label: str) -> None:
    """Start the segment `label` (in the child under valgrind)."""
    if not _labels and os.environ.pop(_SWITCH_ON, None):
        _switch_on()
    _labels.append(label)
    os.getppid()


def _switch_on() -> None:
    done = subprocess.run(
        ["callgrind_control", "--instr=on", str(os.getpid())],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0 or "OK" not in done.stdout:
        raise SystemExit(f"{_SWITCH_FAILED}: {done.stdout}{done.stderr}")


def done() -> None:
    """End the last segment and hand the labels to the parent (the child's last line)."""
    os.getppid()
    print(json.dumps(_labels), flush=True)


def run(
    script: str,
    args: Sequence[str],
    folder: str,
    *,
    python: str = sys.executable,
    valgrind_args: Sequence[str] = (),
) -> tuple[list[tuple[str, str]], str]:
    """Run `script --segments *args` under callgrind, its dumps in `folder`.

    Returns ((label, dump file) of each segment, the child's stdout).
    """
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian package `valgrind`)")
    out = os.path.join(folder, "callgrind.out")
    command = [
        "valgrind", "--tool=callgrind", "--dump-before=getppid", f"--callgrind-out-file={out}",
        *valgrind_args, python, script, "--segments", *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if shutil.which("callgrind_control") is not None:
        fast = subprocess.run(
            [*command[:2], "--instr-atstart=no", *command[2:]],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
            env={**env, _SWITCH_ON: "1"},
        )  # fmt: skip
        child = fast if _SWITCH_FAILED not in fast.stderr else None
    else:
        child = None
    if child is None:  # instrumented from the start: slower, the same counts
        child = subprocess.run(
            command, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env
        )
    if child.returncode != 0:
        errors = [line for line in child.stderr.splitlines() if not line.startswith("==")]
        raise RuntimeError(
            f"{' '.join(command[-len(args) - 3 :])} failed under callgrind"
            f" (exit {child.returncode}):\n" + "\n".join(errors[-30:])
        )
    labels = json.loads(child.stdout.strip().splitlines()[-1])
    # Dump 1 is the start-up before the first mark; segment i is dump i + 2.
    return [(label, f"{out}.{i + 2}") for i, label in enumerate(labels)], child.stdout


def count(
    script: str, args: Sequence[str], *, python: str = sys.executable
) -> list[tuple[str, int]]:
    """(label, instructions) of each segment of `script --segments *args` run under valgrind."""
    with tempfile.TemporaryDirectory() as folder:
        segments, _ = run(script, args, folder, python=python)
        return [(label, instructions(path)) for label, path in segments]


def instructions(path: str) -> int:
    """The instruction count of one callgrind dump."""
    with open(path) as dump:
        for line in dump:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise ValueError(f"no summary line in {path}")


def run_rounds(
    args: argparse.Namespace,
    calls: Sequence[tuple[str, Callable[[], None]]],
    repeat: Callable[[str], int],
) -> None:
    """The child side of a per-call benchmark: each call warmed up, then `args.rounds` rounds
    of `repeat(kind)` calls of each kind, as callgrind segments (`--segments`) or CPU time per
    call printed as JSON; then the process ends."""
    for _, call in calls:
        for _ in range(5):
            call()
    gc.collect()
    gc.freeze()
    times: dict[str, list[float]] = {}
    for round_number in range(args.rounds):
        for kind, call in calls:
            n = repeat(kind)
            if args.segments:
                mark(f"gap/{round_number}/1")
            gc.collect()
            gc.disable()
            if args.segments:
                mark(f"{kind}/{round_number}/{n}")
                for _ in range(n):
                    call()
            else:
                started = time.process_time()
                for _ in range(n):
                    call()
                times.setdefault(kind, []).append((time.process_time() - started) / n)
            gc.enable()
    if args.segments:
        done()
    else:
        print(json.dumps(times))
    sys.stdout.flush()
    os._exit(0)


def measure(script: str, mode: str, args: argparse.Namespace) -> dict[str, float]:
    """The parent side: `script --mode=mode` in a child process, the median per call of each
    kind, in instructions (`--instructions`) or CPU seconds."""
    child_args = [f"--mode={mode}", f"--rounds={args.rounds}", f"--calls={args.calls}"]
    figures: dict[str, list[float]] = {}
    if args.instructions:
        for label, counted in count(script, child_args, python=args.python):
            kind, _, n = label.split("/")
            if kind != "gap":
                figures.setdefault(kind, []).append(counted / int(n))
    else:
        finished = subprocess.run(
            [args.python, script, *child_args], capture_output=True, text=True, check=True
        )
        figures = json.loads(finished.stdout.strip().splitlines()[-1])
    return {kind: statistics.median(values) for kind, values in figures.items()}
