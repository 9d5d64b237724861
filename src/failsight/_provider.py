"""Where a call goes: (provider, server.address, server.port) of a base URL or request URL."""

from __future__ import annotations

from typing import Any, Final

from failsight._taxonomy import MAX_TEXT

__all__ = ["provider_for_host", "server_of", "server_of_url"]

_MAX_CACHED: Final = 256
_servers: dict[tuple[str, str | None, int | None], tuple[str, str | None, int | None]] = {}

_AZURE_SUFFIXES: Final = (
    ".openai.azure.com",
    ".services.ai.azure.com",
    ".cognitiveservices.azure.com",
)


def provider_for_host(host: str | None) -> str:
    """The `provider` label of a base URL's host (docs/reference.md#labels).

    >>> provider_for_host("my-resource.openai.azure.com")
    'azure.ai.openai'
    """
    if not host:
        return "unknown"
    host = host.lower()[:MAX_TEXT]
    if host == "api.openai.com":
        return "openai"
    if host.endswith(_AZURE_SUFFIXES):
        return "azure.ai.openai"
    return host


def server_of(
    scheme: str, host: str | None, port: int | None
) -> tuple[str, str | None, int | None]:
    """(provider, address, port) of an origin; the port defaults by scheme. Cached per origin.

    >>> server_of("https", "api.openai.com", None)
    ('openai', 'api.openai.com', 443)
    """
    key = (scheme, host, port)
    cached = _servers.get(key)
    if cached is None:
        if port is None:
            port = 443 if scheme == "https" else 80
        cached = (provider_for_host(host), host, port)
        if len(_servers) < _MAX_CACHED:
            _servers[key] = cached
    return cached


def server_of_url(url: Any) -> tuple[str, str | None, int | None]:
    """`server_of` an httpx(2) URL object (a client's `base_url`); odd objects give unknowns."""
    host = getattr(url, "host", None)
    port = getattr(url, "port", None)
    scheme = getattr(url, "scheme", "")
    return server_of(
        scheme if isinstance(scheme, str) else "",
        host if isinstance(host, str) and host else None,
        port if isinstance(port, int) else None,
    )
