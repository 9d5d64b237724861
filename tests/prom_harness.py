"""Test helpers around the real Prometheus binaries and the shipped dashboards.

- `require_binary(name)`: the path of `promtool` / `prometheus`; skips the test when it
  is missing, fails it when the environment variable ``CI`` is set.
- `PrometheusServer`: a throwaway Prometheus on a free loopback port that scrapes the
  given targets every second and loads the given rule files (optionally alerting to
  Alertmanagers, over history backfilled from an OpenMetrics file); `serve_registry`
  serves a `prometheus_client` registry on loopback for it to scrape.
- `dashboard_expressions()` / `all_dashboard_queries()`: every PromQL expression of
  ``dashboards/*.json``, raw or with Grafana's variables substituted, ready to run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import make_wsgi_app

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS_DIR = REPO / "dashboards"
RULES_DIR = DASHBOARDS_DIR / "rules"
RULE_FILES = (RULES_DIR / "failsight-recording.yml", RULES_DIR / "failsight-alerts.yml")
PROMQL_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_binary(name: str, *aliases: str, package: str = "prometheus") -> str:
    """Return the path of the executable `name` (or of the first of `aliases` found), or skip
    (fail under CI) the calling test; `package` is the Debian package that installs it.

    >>> promtool = require_binary("promtool")  # doctest: +SKIP
    """
    for candidate in (name, *aliases):
        path = shutil.which(candidate)
        if path:
            return path
    reason = (
        f"`{name}` is not on PATH: install the Debian/Ubuntu package '{package}' "
        "(`make prometheus` does it as root)"
    )
    if _in_ci():
        pytest.fail(f"{reason}; CI is set, so this test must run", pytrace=False)
    pytest.skip(reason)


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool with `args`; the result keeps stdout and stderr for assertion messages."""
    promtool = require_binary("promtool")
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


# --------------------------------------------------------------------------------------
# A real Prometheus server


class PromQLError(RuntimeError):
    """Prometheus rejected a query (bad syntax, or an error while evaluating it)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server binary on a free loopback port, for the length of a ``with`` block: started
    (a few ports tried, as one can be taken between probing and binding), ready when its
    ``/-/ready`` answers 200, stopped and its directory removed on exit. Subclasses name the
    binary's arguments for a port (`command`) and may prepare the directory (`prepare`)."""

    name = "server"

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.port = 0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def command(self, directory: Path) -> list[str]:
        raise NotImplementedError

    def prepare(self, directory: Path) -> None:
        """Writes what the server reads at start (its configuration) into `directory`."""

    def __enter__(self) -> Any:
        self._dir = Path(tempfile.mkdtemp(prefix=f"failsight-{self.name}-"))
        try:
            self.prepare(self._dir)
            for _ in range(3):
                self.port = _free_port()
                with (self._dir / f"{self.name}.log").open("wb") as log:
                    self._proc = subprocess.Popen(
                        self.command(self._dir),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                if self._wait_ready():
                    return self
                if self._proc.poll() is None:
                    break
            raise RuntimeError(f"{self.name} did not become ready:\n{self.log_tail()}")
        except BaseException:
            self._stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return True
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        return False

    def _stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def log_tail(self, lines: int = 40) -> str:
        if self._dir is None or not (self._dir / f"{self.name}.log").exists():
            return ""
        text = (self._dir / f"{self.name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class PrometheusServer(ServerProcess):
    """The real `prometheus` binary on loopback, for the length of a ``with`` block.

    >>> with PrometheusServer(["127.0.0.1:9464"], RULE_FILES) as prom:  # doctest: +SKIP
    ...     prom.wait_for("up", lambda result: len(result) == 1)
    """

    name = "prometheus"

    def __init__(
        self,
        targets: Sequence[str] = (),
        rule_files: Sequence[Path | str] = (),
        *,
        job: str = "failsight",
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        startup_timeout: float = 30.0,
        alertmanagers: Sequence[str] = (),
        history: Path | None = None,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout)
        self.targets = list(targets)
        self.alertmanagers = list(alertmanagers)  # "host:port" of each Alertmanager
        self.history = history  # OpenMetrics with timestamps, stored before the server starts
        self.rule_files = [str(Path(path).resolve()) for path in rule_files]
        self.job = job
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval

    def config(self) -> dict[str, Any]:
        """The prometheus.yml this server runs with."""
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": self.rule_files,
            "scrape_configs": [
                {"job_name": self.job, "static_configs": [{"targets": self.targets}]}
            ],
        }
        if self.alertmanagers:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": self.alertmanagers}]}]
            }
        return config

    def __enter__(self) -> PrometheusServer:
        self._binary = require_binary("prometheus")
        entered: PrometheusServer = super().__enter__()
        return entered

    def prepare(self, directory: Path) -> None:
        (directory / "prometheus.yml").write_text(yaml.safe_dump(self.config(), sort_keys=False))
        if self.history is not None:
            # promtool's backfill writes blocks that the server loads when it starts.
            backfill = run_promtool(
                "tsdb", "create-blocks-from", "openmetrics",
                str(self.history), str(directory / "data"),
            )  # fmt: skip
            if backfill.returncode != 0:
                raise RuntimeError(f"promtool backfill failed:\n{backfill.stderr}")

    def command(self, directory: Path) -> list[str]:
        return [
            self._binary,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address={self.address}",
            "--enable-feature=exemplar-storage",
            "--log.level=warn",
        ]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; vector results as Prometheus returns them, scalars as one sample.

        >>> prom.query("sum(up)")  # doctest: +SKIP
        [{'metric': {}, 'value': [1732492800.0, '1']}]
        """
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                detail = json.load(exc).get("error", "")
            except ValueError:
                detail = str(exc)
            raise PromQLError(f"{expr!r}: {detail}") from None
        if body.get("status") != "success":
            raise PromQLError(f"{expr!r}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] in ("vector", "matrix"):
            return list(data["result"])
        return [{"metric": {}, "value": data["result"]}]

    def wait_for(
        self,
        expr: str,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 15.0,
    ) -> list[dict[str, Any]]:
        """Poll `expr` until `predicate(result)` holds; return that result or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{expr!r} never satisfied the predicate; last result {result}")
            time.sleep(0.2)


def sample_value(result: list[dict[str, Any]]) -> float:
    """The value of a one-sample instant-query result."""
    assert len(result) == 1, result
    return float(result[0]["value"][1])


# --------------------------------------------------------------------------------------
# Dashboard queries


def load_dashboards() -> dict[str, dict[str, Any]]:
    """The shipped dashboards by file name."""
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def iter_panels(panels: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_expressions(*, annotations: bool = True) -> list[tuple[str, str]]:
    """(where, raw expr) for every panel target (and Prometheus annotation) of every dashboard."""
    found: list[tuple[str, str]] = []
    for name, dashboard in load_dashboards().items():
        uid = dashboard.get("uid", name)
        for panel in iter_panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    where = f"{uid}: {panel.get('title', '')} [{target.get('refId', '?')}]"
                    found.append((where, target["expr"]))
        for annotation in dashboard.get("annotations", {}).get("list", []):
            # Grafana's current model keeps the query in `target`; older dashboards at the top.
            expr = (annotation.get("target") or {}).get("expr") or annotation.get("expr")
            if annotations and expr:
                found.append((f"{uid}: annotation {annotation.get('name')}", expr))
    return found


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))|\[\[(\w+)\]\]")


def substitute_variables(
    expr: str,
    *,
    rate_interval: str = "1m",
    interval: str = "15s",
    range_: str = "5m",
    value: str = ".*",
) -> str:
    """Replace Grafana's variables in `expr`: built-in intervals by durations, template
    variables by `value` (the dashboards' "All" value, a regex).

    >>> substitute_variables('rate(x{job=~"$job"}[$__rate_interval])')
    'rate(x{job=~".*"}[1m])'
    """
    builtins = {"__rate_interval": rate_interval, "__interval": interval, "__range": range_}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in builtins:
            return builtins[name]
        if name.startswith("__"):
            raise ValueError(f"unsupported Grafana variable ${name} in {expr!r}")
        return value

    return _VARIABLE.sub(replace, expr)


def all_dashboard_queries(
    *, rate_interval: str = "1m", interval: str = "15s", range_: str = "5m"
) -> list[tuple[str, str]]:
    """(panel title, runnable expr) for every panel query of every dashboard.

    The title is ``"<dashboard uid>: <panel title> [<refId>]"`` so it is unique; template
    variables become ``.*`` (the dashboards' "All"), intervals the given durations.

    >>> all_dashboard_queries()[0]  # doctest: +SKIP
    ('failsight-call-site: Outcomes [A]', 'sum by (call_site, failure_class) (rate(...[1m]))')
    """
    return [
        (
            where,
            substitute_variables(
                expr, rate_interval=rate_interval, interval=interval, range_=range_
            ),
        )
        for where, expr in dashboard_expressions(annotations=False)
    ]


@contextlib.contextmanager
def serve_registry(registry: CollectorRegistry) -> Iterator[str]:
    """Serve `registry`'s exposition on a free loopback port; yields ``"127.0.0.1:<port>"``.

    >>> with serve_registry(CollectorRegistry()) as target:  # doctest: +SKIP
    ...     PrometheusServer([target])
    """

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, make_wsgi_app(registry), handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="exposition", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
