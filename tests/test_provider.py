"""Where a call goes: the `provider` label of a host, and (provider, address, port) of a URL."""

from __future__ import annotations

import pytest

from failsight._provider import provider_for_host, server_of


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("api.openai.com", "openai"),
        ("API.OPENAI.COM", "openai"),
        ("myres.openai.azure.com", "azure.ai.openai"),
        ("x.services.ai.azure.com", "azure.ai.openai"),
        ("api.cometapi.com", "api.cometapi.com"),
        ("127.0.0.1", "127.0.0.1"),
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_provider_for_host(host: str | None, provider: str) -> None:
    assert provider_for_host(host) == provider


@pytest.mark.parametrize(
    ("scheme", "host", "port", "server"),
    [
        ("https", "api.openai.com", None, ("openai", "api.openai.com", 443)),
        ("http", "127.0.0.1", None, ("127.0.0.1", "127.0.0.1", 80)),
        ("http", "127.0.0.1", 8080, ("127.0.0.1", "127.0.0.1", 8080)),
        ("https", None, None, ("unknown", None, 443)),
    ],
)
def test_server_of(
    scheme: str, host: str | None, port: int | None, server: tuple[str, str | None, int]
) -> None:
    assert server_of(scheme, host, port) == server
