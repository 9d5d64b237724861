"""Multi-process workers: a real gunicorn with 4 sync workers, one aggregated `/metrics`.

The WSGI app below calls the fault-injection server through the patched openai SDK with
the scenario the request names, so every failure class is deterministic. `/metrics` is
served from the multiprocess registry. One worker is SIGKILLed while it holds a request;
gunicorn respawns it, `child_exit` calls `failsight.mark_process_dead`, and the totals of
one scrape still equal the requests that completed.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import failsight
from failsight.testing import FaultServer

WORKERS = 4

APP = textwrap.dedent(
    '''
    """A WSGI app as a user would write it: failsight in every gunicorn worker."""
    import json
    import os
    import time
    from urllib.parse import parse_qs

    import openai
    from opentelemetry.sdk.trace import TracerProvider

    import failsight
    from failsight.validators import json_output

    # A recording tracer: spans are sampled, so the decorator passes exemplars, which
    # multiprocess mode ignores (they must not break anything).
    failsight.configure(tracer_provider=TracerProvider())
    failsight.instrument_openai()
    client = openai.OpenAI(
        base_url=os.environ["FAULT_BASE_URL"], api_key="sk-test-key-123456", max_retries=0
    )
    metrics_app = failsight.make_wsgi_app()  # the multiprocess view: every worker's files


    def chat(scenario):
        return client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Failsight-Scenario": scenario},
        )


    @failsight.traced_generation(name="extract", validate=[json_output()])
    def extract(scenario):
        return chat(scenario).choices[0].message.content


    @failsight.traced_generation(name="hold", model="gpt-4o-mini", operation="chat")
    def hold(path):
        with open(path + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(path + ".tmp", path)
        time.sleep(60)  # killed here


    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/metrics":
            return metrics_app(environ, start_response)
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        outcome = "ok"
        if path == "/chat":
            try:
                chat(query["scenario"])
            except openai.OpenAIError as exc:
                outcome = type(exc).__name__
        elif path == "/extract":
            try:
                extract(query["scenario"])
            except openai.OpenAIError as exc:
                outcome = type(exc).__name__
        elif path == "/hold":
            hold(query["file"])
        body = json.dumps({"pid": os.getpid(), "outcome": outcome}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    '''
)

CONFIG = textwrap.dedent(
    """
    import glob
    import os

    import failsight

    workers = {workers}
    worker_class = "sync"
    timeout = 120
    graceful_timeout = 2


    def on_starting(server):
        # Start from an empty directory: stale files of an earlier run would add up.
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        for path in glob.glob(os.path.join(directory, "*.db")):
            os.remove(path)


    def child_exit(server, worker):
        failsight.mark_process_dead(worker.pid)
    """
).format(workers=WORKERS)

# (route, scenario) → (failure_class, reason, call_site) the request must be counted as.
PLAN: dict[tuple[str, str], tuple[str, str | None, str]] = {
    ("chat", "ok"): ("none", None, "unscoped"),
    ("chat", "content_filter"): ("soft", "content_filter", "unscoped"),
    ("chat", "length"): ("soft", "length", "unscoped"),
    ("chat", "http_429"): ("hard", "rate_limited", "unscoped"),
    ("chat", "http_500"): ("hard", "server_error", "unscoped"),
    ("extract", "ok"): ("silent", "invalid_json", "extract"),
    ("extract", "empty_content"): ("soft", "empty_content", "extract"),
    ("extract", "http_401"): ("hard", "unauthorized", "extract"),
}
ROUNDS = 8  # each of the 8 (route, scenario) pairs this many times: 64 requests in all


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 30.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


class Gunicorn:
    def __init__(self, workdir: Path, multiproc: Path, server: FaultServer) -> None:
        (workdir / "failsight_prod_app.py").write_text(APP)
        (workdir / "gunicorn.conf.py").write_text(CONFIG)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
            "FAULT_BASE_URL": server.base_url,
            "PYTHONPATH": os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]),
        }
        self.log = (workdir / "gunicorn.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
             "-b", f"127.0.0.1:{self.port}", "failsight_prod_app:app"],
            cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.workdir = workdir

    def wait_workers(self, count: int, gone: int = 0, timeout: float = 30.0) -> set[int]:
        """Wait until gunicorn has `count` workers, none of them `gone`, and serves; returns
        their pids."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.log_tail()
            workers = _children(self.proc.pid)
            if len(workers) == count and gone not in workers:
                try:
                    _get(f"{self.url}/metrics", timeout=5)
                    return workers
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"gunicorn workers {workers}\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self) -> str:
        self.log.flush()
        return (self.workdir / "gunicorn.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


@pytest.fixture
def gunicorn(tmp_path: Path, server: FaultServer) -> Iterator[Gunicorn]:
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    # A stale file of an earlier run: `on_starting` must clear it.
    (multiproc / "counter_1.db").write_bytes(b"stale")
    app = Gunicorn(tmp_path, multiproc, server)
    try:
        yield app
    finally:
        app.stop()


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = _get(f"{url}/metrics").decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = collections.defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((dict(sample.labels), sample.value))
    return samples


def _total(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(value for have, value in samples if all(have.get(k) == v for k, v in labels.items()))


def _send(url: str, route: str, scenario: str) -> int:
    reply = json.loads(_get(f"{url}/{route}?scenario={scenario}"))
    return int(reply["pid"])


def test_gunicorn_workers_aggregate_and_survive_a_killed_worker(
    gunicorn: Gunicorn, server: FaultServer, tmp_path: Path
) -> None:
    first_workers = gunicorn.wait_workers(WORKERS)
    multiproc = tmp_path / "multiproc"
    assert not (multiproc / "counter_1.db").exists()  # cleared by on_starting
    plan = [pair for _ in range(ROUNDS) for pair in PLAN]
    half = len(plan) // 2

    with ThreadPoolExecutor(max_workers=8) as pool:
        pids = set(pool.map(lambda pair: _send(gunicorn.url, *pair), plan[:half]))

        # Kill a worker while it holds an open traced scope (in flight, never finished).
        held = tmp_path / "held.pid"
        killed_request = pool.submit(_get, f"{gunicorn.url}/hold?file={held}", 60)
        deadline = time.monotonic() + 20
        while not held.exists():
            assert time.monotonic() < deadline, gunicorn.log_tail()
            time.sleep(0.05)
        victim = int(held.read_text())
        mid = _scrape(gunicorn.url)
        assert _total(mid["genai_in_flight_requests"], call_site="hold") == 1
        assert (multiproc / f"gauge_livesum_{victim}.db").exists()
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(OSError):  # the client of the killed request sees the drop
            killed_request.result(timeout=30)

        workers = gunicorn.wait_workers(WORKERS, gone=victim)  # reaped and respawned
        assert victim in first_workers and victim not in workers
        assert not (multiproc / f"gauge_livesum_{victim}.db").exists()  # child_exit ran

        pids |= set(pool.map(lambda pair: _send(gunicorn.url, *pair), plan[half:]))

    assert len(pids) >= 2, "the requests should have spread over several workers"
    if victim in pids:  # what the killed worker counted before it died is kept
        assert (multiproc / f"counter_{victim}.db").exists()
    samples = _scrape(gunicorn.url)
    requests = samples["genai_requests_total"]
    assert _total(requests) == len(plan)  # the killed request never completed
    by_class: collections.Counter[tuple[str, str]] = collections.Counter()
    by_reason: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for failure_class, reason, call_site in PLAN.values():
        by_class[(call_site, failure_class)] += ROUNDS
        if reason is not None:
            by_reason[(call_site, failure_class, reason)] += ROUNDS
    for (call_site, failure_class), count in by_class.items():
        assert _total(requests, call_site=call_site, failure_class=failure_class) == count
    failures = samples["genai_failures_total"]
    for (call_site, failure_class, reason), count in by_reason.items():
        assert (
            _total(failures, call_site=call_site, failure_class=failure_class, reason=reason)
            == count
        ), (call_site, reason)
    assert _total(failures) == sum(by_reason.values())
    assert _total(samples["genai_request_attempts_count"]) == len(plan)
    assert _total(samples["genai_request_duration_seconds_count"]) == len(plan)
    # 11 input tokens per 200 response with usage (ok/content_filter/length/empty_content).
    with_usage = ROUNDS * 5
    assert _total(samples["genai_tokens_total"], token_type="input") == 11 * with_usage
    # The killed worker's open scope is forgotten: nothing is in flight any more.
    assert _total(samples["genai_in_flight_requests"]) == 0
    assert "genai_requests_created" not in samples  # multiprocess mode has no _created


def test_mark_process_dead_without_multiproc_dir_is_a_no_op(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    failsight.mark_process_dead(12345)  # single-process gunicorn config: harmless
    live = tmp_path / "gauge_livesum_12345.db"
    kept = tmp_path / "counter_12345.db"
    live.write_bytes(b"")
    kept.write_bytes(b"")
    failsight.mark_process_dead(12345, str(tmp_path))
    assert not live.exists() and kept.exists()
