"""The `failsight` command as a user runs it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from failsight.demo import build_plan
from failsight.testing import FaultServer


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
