"""The `failsight` command as a user runs it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import argparse
import glob
import os
import pty
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from failsight.cli import build_parser
from failsight.demo import build_plan, expected_totals
from failsight.demo._plan import async_plan
from failsight.testing import FaultServer
from test_assets import build_distributions, clean_env, fresh_venv, pip_install

pytestmark = pytest.mark.e2e


def failsight(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "failsight", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("failsight: error: ") and text in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("--bogus",), "see 'failsight --help'"),
        (("demo", "--bogus"), "unrecognized arguments: --bogus"),
        (("demo", "--port", "99999"), "port out of range"),
        (("demo", "--rounds", "x"), "not a whole number"),
        (("launch",), "invalid choice"),
        ((), "required"),
        (("run",), "no program given"),
    ],
)
def test_bad_options(args: tuple[str, ...], text: str) -> None:
    assert_one_line_error(failsight(*args), 2, text)


def test_busy_port(busy_port: int) -> None:
    assert_one_line_error(failsight("demo", "--port", str(busy_port)), 2, f":{busy_port}")
    result = failsight("run", "--port", str(busy_port), "--", sys.executable, "-c", "pass")
    assert_one_line_error(result, 2, "cannot serve /metrics")


def assert_only_metrics_line(stderr: str) -> None:
    assert re.fullmatch(r"failsight: /metrics on http://127\.0\.0\.1:\d+/metrics\n", stderr), stderr


def test_run_missing_program() -> None:
    assert_one_line_error(failsight("run", "--", "no-such-program-xyz"), 127, "not found")


APP = textwrap.dedent(
    """
    import sys
    import openai
    from prometheus_client import REGISTRY, generate_latest
    from failsight import _sdk_patch

    assert _sdk_patch.is_instrumented(), "the patch was applied before the program ran"
    client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-test", max_retries=0)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Failsight-Scenario": "content_filter"},
    )
    text = generate_latest(REGISTRY).decode()
    print([line for line in text.splitlines() if line.startswith("genai_failures_total")][0])
    sys.exit(int(sys.argv[2]))
    """
)


def test_run_instruments_and_passes_the_exit_code() -> None:
    with FaultServer() as server:
        result = failsight(
            "run", "--port", "0", "--", sys.executable, "-c", APP, server.base_url, "3"
        )
    assert result.returncode == 3, result.stderr
    assert 'reason="content_filter"' in result.stdout
    assert result.stdout.strip().endswith("1.0")
    # Where /metrics is served, and nothing else: no "Error in sitecustomize", no warnings.
    assert_only_metrics_line(result.stderr)


# --------------------------------------------------------------------------------------
# `failsight run` on every CPython 3.10-3.13 found here: the package installed from the wheel
# built in the suite (with the openai extra) into a venv per interpreter.

MINORS = (10, 11, 12, 13)


def _find_python(minor: int) -> str | None:
    """An interpreter for 3.`minor`: this one, on PATH, under pyenv, or Debian's."""
    if sys.version_info[:2] == (3, minor):
        return sys.executable
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [
        shutil.which(f"python3.{minor}"),
        *sorted(glob.glob(f"{pyenv}/versions/3.{minor}.*/bin/python3.{minor}"), reverse=True),
        f"/usr/bin/python3.{minor}",
        f"/usr/local/bin/python3.{minor}",
    ]
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if probe.returncode == 0 and probe.stdout.strip() == f"(3, {minor})":
            return candidate
    return None


@pytest.fixture(scope="session")
def interpreters(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    """The `failsight` command to run, by minor version, for each interpreter found."""
    found = {minor: _find_python(minor) for minor in MINORS}
    commands: dict[int, list[str]] = {}
    others = {m: p for m, p in found.items() if p is not None and p != sys.executable}
    if others:
        wheel = build_distributions(tmp_path_factory.mktemp("dists")).wheel
        root = tmp_path_factory.mktemp("interpreters")

        def install(minor: int) -> list[str]:
            python = fresh_venv(root / f"py3{minor}", others[minor])
            pip_install(python, "--no-compile", f"{wheel}[openai]")
            return [str(python.parent / "failsight")]

        with ThreadPoolExecutor(max_workers=len(others)) as pool:
            commands.update(zip(others, pool.map(install, others), strict=True))
    for minor, python in found.items():
        if python == sys.executable:
            commands[minor] = [sys.executable, "-m", "failsight"]
    return commands


def _python_of(command: list[str]) -> str:
    return command[0] if command[0] == sys.executable else str(Path(command[0]).parent / "python")


@pytest.mark.parametrize("minor", MINORS, ids=lambda m: f"py3{m}")
def test_run_has_clean_stderr_on_each_python(
    minor: int, interpreters: dict[int, list[str]], tmp_path: Path
) -> None:
    if minor not in interpreters:
        pytest.skip(f"no CPython 3.{minor} on this machine")
    command = interpreters[minor]
    python = _python_of(command)
    env = clean_env()
    run = [*command, "run", "--port", "0", "--", python, "-c"]
    with FaultServer() as server:
        result = subprocess.run(
            [*run, APP, server.base_url, "3"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 3, result.stderr
    assert 'reason="content_filter"' in result.stdout
    assert_only_metrics_line(result.stderr)

    # A sitecustomize of the user's own still runs after failsight's, and stderr stays clean.
    (tmp_path / "sitecustomize.py").write_text("print('user sitecustomize')\n")
    env["PYTHONPATH"] = str(tmp_path)
    result = subprocess.run(
        [*run, "import sitecustomize; print(sitecustomize.__file__)"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path.parent,
    )
    assert result.returncode == 0, result.stderr
    assert_only_metrics_line(result.stderr)
    lines = result.stdout.splitlines()
    assert lines[-1] == str(tmp_path / "sitecustomize.py")
    assert lines[:-1].count("user sitecustomize") == 2  # the command's and the program's


def test_demo_prints_the_table() -> None:
    result = failsight(
        "demo", "--port", "0", "--rounds", "1", "--async-requests", "6", "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Logical requests: {len(build_plan(1)) + 6}" in out
    for heading in (
        "Failures by class and reason",
        "Retries by reason",
        "Tokens by type",
        "Video jobs by outcome",
    ):
        assert heading in out
    assert "soft    content_filter" in out
    assert "silent  invalid_json" in out
    # The plan's wasted answers, each of the fault server's 11 input + 9 output tokens.
    wasted = out.split("Wasted tokens (input + output) by class and reason\n", 1)[1]
    wasted = wasted.split("\n\n", 1)[0]
    plan = expected_totals([*build_plan(1), *async_plan(6)])["wasted"]
    shown = {
        (line.split()[0], line.split()[1]): float(line.split()[2]) for line in wasted.splitlines()
    }
    assert shown == {key: 20.0 * n for key, n in plan.items()}
    assert "violence  completion  high" in out
    assert re.search(r"Spend: \$\d+\.\d{6} in all, \$\d+\.\d{6} wasted \(\d+%\)", out), out


# --------------------------------------------------------------------------------------
# The demo's progress bar and help


DEMO_ARGS = ("demo", "--port", "0", "--rounds", "1", "--async-requests", "6")


def test_demo_draws_no_progress_bar_into_a_pipe() -> None:
    result = failsight(*DEMO_ARGS)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr + result.stdout
    assert not re.search(r"\[[#.]+\] \d+/\d+ requests", result.stderr)  # no frames at all
    assert "Failures by class and reason" in result.stdout


def test_demo_draws_the_progress_bar_on_a_terminal() -> None:
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "failsight", *DEMO_ARGS],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        terminal = -1
        drawn = b""
        while True:  # read until the child's end of the terminal closes
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: every writer is gone
                break
            if not chunk:
                break
            drawn += chunk
        stdout, _ = process.communicate(timeout=120)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert process.returncode == 0, drawn
    total = len(build_plan(1)) + 6
    assert b"\r  [" in drawn and f"] {total}/{total} requests".encode() in drawn
    assert b"\r" not in stdout  # the table is plain text


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_help_shows_every_default() -> None:
    for name, sub in _subparsers(build_parser()).items():
        for action in sub._actions:
            if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
                continue
            assert "default" in (action.help or ""), f"failsight {name} {action.option_strings}"
    help_text = failsight("demo", "--help").stdout
    assert "(default 60)" in " ".join(help_text.split())
