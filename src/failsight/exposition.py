"""Serving `/metrics`: a loopback HTTP server, or WSGI/ASGI apps to mount in your own server."""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import make_asgi_app as _make_asgi_app
from prometheus_client import make_wsgi_app as _make_wsgi_app
from prometheus_client import start_http_server as _start_http_server

from failsight._config import get_state

__all__ = ["make_asgi_app", "make_wsgi_app", "metrics_registry", "start_metrics_server"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_registry(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """The registry to expose: `registry`, else the multiprocess view when
    `PROMETHEUS_MULTIPROC_DIR` is set, else the one `configure()` chose."""
    if registry is not None:
        return registry
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
        return collected
    return get_state().settings.registry


def start_metrics_server(
    port: int = 9464,
    addr: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    client_cafile: str | None = None,
    client_capath: str | None = None,
    protocol: int = ssl.PROTOCOL_TLS_SERVER,
    client_auth_required: bool = False,
) -> tuple[Any, threading.Thread]:
    """Serve `/metrics` (text and OpenMetrics with exemplars) from a daemon thread.

    Binds to loopback unless `addr` says otherwise; `certfile`/`keyfile` turn on TLS and
    `client_cafile` + `client_auth_required` require client certificates. Returns the
    server (call `.shutdown()` to stop) and its thread. A busy port raises OSError.

    >>> server, thread = start_metrics_server(port=0)  # doctest: +SKIP
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"start_metrics_server: port must be 0..65535, got {port!r}")
    if (certfile is None) != (keyfile is None):
        raise ValueError("start_metrics_server: certfile and keyfile go together")
    server, thread = _start_http_server(
        port,
        addr=addr,
        registry=metrics_registry(registry),
        certfile=certfile,
        keyfile=keyfile,
        client_cafile=client_cafile,
        client_capath=client_capath,
        protocol=protocol,
        client_auth_required=client_auth_required,
    )
    return server, thread


def make_wsgi_app(registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """A WSGI app serving the metrics, e.g. mounted at `/metrics` in Flask or Django."""
    return _make_wsgi_app(metrics_registry(registry))


def make_asgi_app(registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """An ASGI app serving the metrics, e.g. `app.mount("/metrics", make_asgi_app())`."""
    return _make_asgi_app(metrics_registry(registry))
