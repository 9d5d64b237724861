"""Test helpers around the real Alertmanager binary and the shipped deploy/alertmanager.yml.

- `AlertmanagerServer`: a throwaway Alertmanager on a free loopback port (no cluster
  gossip), for the length of a ``with`` block; it takes alerts over its v2 API.
- `WebhookReceiver`: an HTTP server on loopback that keeps every notification posted to it.
- `with_webhook_receivers(config, url)`: the shipped config with every receiver replaced by
  a webhook to ``url/<receiver name>`` and the notification timers shortened; routes,
  grouping and inhibition stay as shipped.
"""

from __future__ import annotations

import copy
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from prom_harness import REPO, ServerProcess, require_binary

ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager.yml"


def alertmanager_binary() -> str:
    """The Alertmanager executable (Debian names it prometheus-alertmanager); skip or fail."""
    return require_binary(
        "prometheus-alertmanager", "alertmanager", package="prometheus-alertmanager"
    )


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run amtool with `args`; the result keeps stdout and stderr for assertion messages."""
    binary = require_binary("amtool", package="prometheus-alertmanager")
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes", []):
        yield from _routes(child)


def with_webhook_receivers(
    config: dict[str, Any], url: str, *, group_wait: str = "1s", group_interval: str = "1s"
) -> dict[str, Any]:
    """`config` with each receiver posting to ``url/<its name>`` and every route's timers
    shortened; nothing else changes.

    >>> shipped = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    >>> copied = with_webhook_receivers(shipped, "http://127.0.0.1:5001")
    >>> copied["receivers"][0]["webhook_configs"][0]["url"]
    'http://127.0.0.1:5001/failsight-page'
    """
    copied = copy.deepcopy(config)
    copied["receivers"] = [
        {
            "name": receiver["name"],
            "webhook_configs": [{"url": f"{url}/{receiver['name']}", "send_resolved": True}],
        }
        for receiver in config["receivers"]
    ]
    for route in _routes(copied["route"]):
        for key, value in (("group_wait", group_wait), ("group_interval", group_interval)):
            if key in route or route is copied["route"]:
                route[key] = value
    return copied


class AlertmanagerServer(ServerProcess):
    """The real Alertmanager on loopback, for the length of a ``with`` block.

    >>> with AlertmanagerServer(config) as am:  # doctest: +SKIP
    ...     am.post_alerts([{"labels": {"alertname": "Test"}}])
    """

    name = "alertmanager"

    def __init__(self, config: dict[str, Any], *, startup_timeout: float = 30.0) -> None:
        super().__init__(startup_timeout=startup_timeout)
        self.config = config

    def __enter__(self) -> AlertmanagerServer:
        self._binary = alertmanager_binary()
        entered: AlertmanagerServer = super().__enter__()
        return entered

    def prepare(self, directory: Path) -> None:
        (directory / "alertmanager.yml").write_text(yaml.safe_dump(self.config, sort_keys=False))

    def command(self, directory: Path) -> list[str]:
        return [
            self._binary,
            f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address={self.address}",
            # A single instance: no gossip port (9094) to collide on.
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Send alerts as Prometheus does (POST /api/v2/alerts)."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, response.status

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts it holds, each with ``status.state`` and ``status.inhibitedBy``."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as response:
            result: list[dict[str, Any]] = json.load(response)
            return result


@dataclass(frozen=True)
class Notification:
    """One webhook POST: when it arrived (monotonic seconds), its path and JSON body."""

    received: float
    path: str
    body: dict[str, Any]


class WebhookReceiver:
    """Loopback HTTP server keeping every JSON notification posted to it.

    >>> with WebhookReceiver() as hook:  # doctest: +SKIP
    ...     hook.wait_for(lambda notes: len(notes) > 0, timeout=10)
    """

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver._changed:
                    receiver.notifications.append(Notification(time.monotonic(), self.path, body))
                    receiver._changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def snapshot(self) -> list[Notification]:
        with self._changed:
            return list(self.notifications)

    def wait_for(
        self, predicate: Callable[[list[Notification]], bool], timeout: float
    ) -> list[Notification]:
        """Block until `predicate(notifications)` holds; return them, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self.notifications)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"webhook: still waiting after {timeout} s")
                self._changed.wait(min(left, 0.5))
            return list(self.notifications)
