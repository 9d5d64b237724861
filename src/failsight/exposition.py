"""Serving `/metrics`: a loopback HTTP server, or WSGI/ASGI apps to mount in your own server."""

from __future__ import annotations

import os
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client import make_asgi_app as _make_asgi_app
from prometheus_client import make_wsgi_app as _make_wsgi_app
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.exposition import ThreadingWSGIServer

from failsight import _deferred
from failsight._config import get_state
from failsight._metrics import BeforeCollect

__all__ = ["make_asgi_app", "make_wsgi_app", "metrics_registry", "start_metrics_server"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _check_registry(where: str, registry: Any) -> None:
    if registry is not None and not callable(getattr(registry, "collect", None)):
        raise TypeError(
            f"{where}: registry must be a prometheus_client CollectorRegistry (or None for "
            f"the one failsight.configure() chose), got {type(registry).__name__} {registry!r}"
        )


def metrics_registry(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """The registry to expose: `registry`, else the multiprocess view when
    `PROMETHEUS_MULTIPROC_DIR` is set, else the one `configure()` chose."""
    _check_registry("metrics_registry", registry)
    if registry is not None:
        return registry
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        collected = CollectorRegistry()
        # This process's deferred recordings reach its files before they are read.
        collected.register(BeforeCollect(_deferred.drain))
        multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
        return collected
    return get_state().settings.registry


def _port_number(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        hint = ""
        if isinstance(port, str):  # read from the environment and not converted
            hint = f"; int({port!r}) if it is read from the environment"
        raise TypeError(
            f"start_metrics_server: port must be an int in 0..65535 (0 picks a free port), "
            f"got {type(port).__name__} {port!r}{hint}"
        )
    if not 0 <= port <= 65535:
        raise ValueError(f"start_metrics_server: port must be in 0..65535, got {port}")
    return port


def _check_addr(addr: Any) -> str:
    if not isinstance(addr, str):
        raise TypeError(f"start_metrics_server: addr must be a str, got {addr!r}")
    if not addr.strip():
        # "" would bind every interface: that has to be asked for by name.
        raise ValueError(
            "start_metrics_server: addr is empty; give a host, e.g. 127.0.0.1 (loopback) or "
            "0.0.0.0 (every interface)"
        )
    return addr


# The protocols an SSLContext accepts, but a client-side one: it cannot serve.
_SERVER_PROTOCOLS: Final = frozenset(
    int(value) for name, value in vars(ssl).items() if name.startswith("PROTOCOL_")
) - {int(ssl.PROTOCOL_TLS_CLIENT)}


def _check_protocol(protocol: Any, tls: bool) -> None:
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        raise TypeError(
            f"start_metrics_server: protocol must be an ssl.PROTOCOL_* constant, got {protocol!r}"
        )
    if protocol not in _SERVER_PROTOCOLS:
        raise ValueError(
            f"start_metrics_server: protocol={protocol!r} is not a server protocol; use "
            "ssl.PROTOCOL_TLS_SERVER (the default)"
        )
    if not tls and protocol != ssl.PROTOCOL_TLS_SERVER:
        raise ValueError(
            "start_metrics_server: protocol= needs TLS: pass certfile= and keyfile= too "
            "(without them /metrics is served as plain HTTP)"
        )


def _check_tls(
    certfile: str | None,
    keyfile: str | None,
    client_cafile: str | None,
    client_capath: str | None,
    protocol: int,
    client_auth_required: bool,
) -> None:
    """Fail before binding, naming the option: never fall back to plain HTTP silently."""
    if (certfile is None) != (keyfile is None):
        raise ValueError("start_metrics_server: certfile and keyfile go together")
    client_options = [
        name
        for name, value in (
            ("client_cafile", client_cafile),
            ("client_capath", client_capath),
            ("client_auth_required", client_auth_required or None),
        )
        if value is not None
    ]
    if certfile is None:
        if client_options:
            raise ValueError(
                f"start_metrics_server: {', '.join(client_options)} need TLS: pass certfile= "
                "and keyfile= too (without them /metrics would be served as plain HTTP)"
            )
        return
    if client_auth_required and client_cafile is None and client_capath is None:
        raise ValueError(
            "start_metrics_server: client_auth_required=True needs client_cafile= or "
            "client_capath=, the CA that signs the scrapers' certificates"
        )
    # Load the files now: a bad one is reported by option, and before the port is bound.
    context = ssl.SSLContext(protocol)
    if client_cafile is not None or client_capath is not None:
        try:
            context.load_verify_locations(client_cafile, client_capath)
        except (OSError, ssl.SSLError) as exc:
            raise type(exc)(
                f"start_metrics_server: cannot load client_cafile={client_cafile!r} / "
                f"client_capath={client_capath!r}: {exc}"
            ) from None
    try:
        context.load_cert_chain(certfile=certfile, keyfile=keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise type(exc)(
            f"start_metrics_server: cannot load certfile={certfile!r} with "
            f"keyfile={keyfile!r}: {exc}"
        ) from None


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
    `client_cafile` + `client_auth_required` require client certificates (client options
    or `protocol` without `certfile`/`keyfile` are a ValueError, never plain HTTP). `port`
    is an int (0 picks a free one). Returns the server (call `.shutdown()` to stop) and its
    thread. A busy port raises OSError naming the address and port.

    >>> server, thread = start_metrics_server(port=0)  # doctest: +SKIP
    """
    port = _port_number(port)
    addr = _check_addr(addr)
    _check_registry("start_metrics_server", registry)
    if not isinstance(client_auth_required, bool):
        raise TypeError("start_metrics_server: client_auth_required must be True or False")
    _check_protocol(protocol, certfile is not None or keyfile is not None)
    _check_tls(certfile, keyfile, client_cafile, client_capath, protocol, client_auth_required)
    exposed = metrics_registry(registry)
    try:
        server, thread = _start_http_server(
            port,
            addr=addr,
            registry=exposed,
            certfile=certfile,
            keyfile=keyfile,
            client_cafile=client_cafile,
            client_capath=client_capath,
            protocol=protocol,
            client_auth_required=client_auth_required,
        )
    except OSError as exc:  # busy port, address not on this host, unknown host name
        raise _bind_error(exc, addr, port) from None
    return server, thread


def _bind_error(exc: OSError, addr: str, port: int) -> OSError:
    """One line naming the address and port, keeping the errno (and its OSError subclass)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    reason = reason[:1].lower() + reason[1:]
    message = f"cannot serve /metrics on {_host_port(addr, port)}: {reason}"
    return OSError(message) if exc.errno is None else OSError(exc.errno, message)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _metrics_url(server: Any) -> str:
    """Where a server from `start_metrics_server` answers, as a URL.

    >>> server, _ = start_metrics_server(port=0)  # doctest: +SKIP
    >>> _metrics_url(server)  # doctest: +SKIP
    'http://127.0.0.1:40123/metrics'
    """
    host, port = server.server_address[:2]
    return f"http://{_host_port(str(host), int(port))}/metrics"


def _check_bindable(port: int, addr: str = "127.0.0.1") -> None:
    """Raise the OSError `start_metrics_server(port, addr)` would raise for a taken port.

    The probe binds and listens as the server does (the same address family, the server
    class's SO_REUSEADDR), so a port that the server could take is never refused: a port
    whose last connections linger in TIME_WAIT after a scrape, say. Port 0 always binds.

    >>> _check_bindable(0)
    """
    port = _port_number(port)
    addr = _check_addr(addr)
    if port == 0:
        return
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        probe = type(
            "_Probe",
            (socketserver.TCPServer,),
            {
                "address_family": family,
                "allow_reuse_address": ThreadingWSGIServer.allow_reuse_address,
                "allow_reuse_port": getattr(ThreadingWSGIServer, "allow_reuse_port", False),
            },
        )
        probe((sockaddr[0], port), socketserver.BaseRequestHandler).server_close()
    except OSError as exc:
        raise _bind_error(exc, addr, port) from None


def make_wsgi_app(registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """A WSGI app serving the metrics, e.g. mounted at `/metrics` in Flask or Django."""
    _check_registry("make_wsgi_app", registry)
    return _make_wsgi_app(metrics_registry(registry))


def make_asgi_app(registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """An ASGI app serving the metrics, e.g. `app.mount("/metrics", make_asgi_app())`."""
    _check_registry("make_asgi_app", registry)
    return _make_asgi_app(metrics_registry(registry))
