"""`failsight run`/`demo` and their port: refused only when the server itself could not bind,
one line (never a traceback) when it cannot, and where /metrics is served said on stderr."""

from __future__ import annotations

import io
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest

import failsight
from failsight.demo import run_demo
from test_cli import assert_one_line_error
from test_cli import failsight as failsight_command

pytestmark = pytest.mark.e2e  # child processes and loopback sockets


def _port_left_in_time_wait() -> int:
    """A port whose /metrics server was scraped and stopped: the server closed the
    connection first, so its side lingers in TIME_WAIT (for a minute on Linux)."""
    server, _ = failsight.start_metrics_server(port=0)
    port: int = server.server_address[1]
    with socket.create_connection(("127.0.0.1", port)) as scrape:
        scrape.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        while scrape.recv(65536):  # read to the server's end: it closes first
            pass
    server.shutdown()
    server.server_close()
    # The state the bug needed: a bind without SO_REUSEADDR is refused on this port.
    deadline = time.monotonic() + 5
    while True:
        with socket.socket() as plain:
            try:
                plain.bind(("127.0.0.1", port))
            except OSError:
                break
        assert time.monotonic() < deadline, "the scraped port never lingered"
        time.sleep(0.02)
    return port


METRICS_LINE = re.compile(r"failsight: /metrics on http://127\.0\.0\.1:(\d+)/metrics")


def test_run_starts_on_a_port_left_in_time_wait_by_a_scrape() -> None:
    port = _port_left_in_time_wait()
    result = failsight_command(
        "run", "--port", str(port), "--", sys.executable, "-c", "print('program output')"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "program output\n"  # the program's stdout is its own
    assert result.stderr == f"failsight: /metrics on http://127.0.0.1:{port}/metrics\n"


def test_demo_starts_on_a_port_left_in_time_wait_by_a_scrape() -> None:
    port = _port_left_in_time_wait()
    result = failsight_command(
        "demo", "--port", str(port), "--rounds", "0", "--async-requests", "0", "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    assert f"/metrics on http://127.0.0.1:{port}/metrics" in result.stdout
    assert "Traceback" not in result.stderr


def test_run_says_where_metrics_are_served_with_the_port_it_got() -> None:
    # The program waits for a line on stdin: meanwhile /metrics is scraped at the URL shown.
    process = subprocess.Popen(
        [sys.executable, "-m", "failsight", "run", "--port", "0", "--", sys.executable, "-c",
         "import sys; sys.stdin.readline(); print('done')"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        # Bounded: a command that says nothing must fail this test, not hang it.
        ready, _, _ = select.select([process.stderr], [], [], 60)
        assert ready, "nothing on stderr: where /metrics is served was not said"
        line = process.stderr.readline()
        assert METRICS_LINE.fullmatch(line.rstrip("\n")), line
        with urllib.request.urlopen(line.split(" on ", 1)[1].strip(), timeout=30) as scraped:
            assert scraped.status == 200 and b"genai_telemetry_errors_total" in scraped.read()
        out, err = process.communicate("\n", timeout=60)
    finally:
        process.kill()
        process.wait()
    assert (process.returncode, out, err) == (0, "done\n", "")


def test_run_demo_reports_a_taken_port_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # What the second of two demos started at the same moment meets: the port is taken
    # between any check and the bind. Nothing is started or configured.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = io.StringIO()
        assert run_demo(port=port, rounds=0, async_count=0, progress=False, out=out) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"failsight: error: cannot serve /metrics on 127.0.0.1:{port}: address already in use\n"
    )
    assert out.getvalue() == ""


def test_two_demos_started_together_one_serves_one_says_why_not() -> None:
    with socket.socket() as spare:  # a free port, for both
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    command = [sys.executable, "-m", "failsight", "demo", "--port", str(port), "--rounds", "0",
               "--async-requests", "0", "--no-progress", "--keep-serving"]  # fmt: skip
    demos = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        # The first to bind serves until interrupted: the other always finds the port taken.
        deadline = time.monotonic() + 120
        while all(demo.poll() is None for demo in demos):
            assert time.monotonic() < deadline, "neither demo stopped"
            time.sleep(0.1)
        loser = next(demo for demo in demos if demo.returncode is not None)
        winner = next(demo for demo in demos if demo is not loser)
        out, err = loser.communicate(timeout=60)
        assert (loser.returncode, out) == (2, ""), err
        assert err == (
            f"failsight: error: cannot serve /metrics on 127.0.0.1:{port}: address already in use\n"
        )
        serving = threading.Event()
        shown: list[str] = []

        def watch(stream: Any) -> None:
            for line in stream:
                shown.append(line)
                if line.startswith("Serving /metrics"):
                    serving.set()

        threading.Thread(target=watch, args=(winner.stdout,), daemon=True).start()
        assert serving.wait(60), shown  # then Ctrl-C ends it as it ends any demo
        assert f"Serving /metrics on http://127.0.0.1:{port}/metrics" in "".join(shown)
        winner.send_signal(signal.SIGINT)
        assert winner.wait(60) == 0
        assert winner.stderr is not None and "Traceback" not in winner.stderr.read()
    finally:
        for demo in demos:
            if demo.poll() is None:
                demo.kill()
                demo.wait()


@pytest.mark.parametrize("command", ["demo", "run"])
def test_an_empty_address_is_refused(command: str) -> None:
    args = [command, "--addr", "", "--port", "0"]
    if command == "run":
        args += ["--", sys.executable, "-c", "pass"]
    assert_one_line_error(failsight_command(*args), 2, "empty address")


def test_run_refuses_a_port_another_server_listens_on() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = failsight_command("run", "--port", str(port), "--", sys.executable, "-c", "1")
    assert_one_line_error(result, 2, f"cannot serve /metrics on 127.0.0.1:{port}")


def test_the_url_brackets_an_ipv6_host() -> None:
    from failsight.exposition import _metrics_url

    assert _metrics_url(SimpleNamespace(server_address=("::1", 9464, 0, 0))) == (
        "http://[::1]:9464/metrics"
    )
    assert _metrics_url(SimpleNamespace(server_address=("127.0.0.1", 80))) == (
        "http://127.0.0.1:80/metrics"
    )


def test_a_closed_pipe_on_stdout_is_not_a_traceback() -> None:
    # `failsight demo | head -1`: the reader goes away while the table is written.
    process = subprocess.Popen(
        [sys.executable, "-m", "failsight", "demo", "--port", "0", "--rounds", "1",
         "--async-requests", "0", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    process.stdout.close()
    err = process.stderr.read().decode()
    process.wait(timeout=180)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert process.returncode != 0
