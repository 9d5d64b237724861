"""One HTTP request of the doctor, and what came back: status, headers, body, timing."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Prober", "Reply", "error_fields"]


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, or why there was none (``status is None``, ``error_kind`` set)."""

    method: str
    url: str
    status: int | None
    probe: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    text: str = ""
    seconds: float = 0.0
    error_kind: str | None = None  # "connect", "tls", "timeout", "protocol"
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json_dict(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}


def error_fields(reply: Reply) -> tuple[str, str]:
    """The OpenAI error body's ``(code, message)``; empty strings when absent."""
    error = reply.json_dict().get("error")
    if isinstance(error, dict):
        code = error.get("code") or error.get("type") or ""
        message = error.get("message") or ""
        return str(code), " ".join(str(message).split())[:160]
    if isinstance(error, str):
        return "", error[:160]
    return "", " ".join(reply.text.split())[:160]


class Prober:
    """Sends the doctor's requests with ``Authorization: Bearer <key>`` (or ``key_header``).

    ``headers`` adds headers per probe name (the fault server's scenario header in tests
    and in ``--against-fault-server``); ``transport`` replaces httpx's network transport.
    """

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 30.0,
        headers: Mapping[str, Mapping[str, str]] | None = None,
        transport: Any = None,
        key_header: str = "Authorization",
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self._key = key
        # Azure OpenAI's API keys go in `api-key`; everyone else's as `Authorization: Bearer`.
        self._auth = (
            {"Authorization": f"Bearer {key}"}
            if key_header.lower() == "authorization"
            else {key_header: key}
        )
        self._headers = headers or {}
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        self.sent: list[Reply] = []

    def close(self) -> None:
        self._client.close()

    def request(
        self, probe: str, method: str, path: str, payload: Mapping[str, Any] | None = None
    ) -> Reply:
        import httpx

        url = f"{self.base_url}{path}"
        headers = {**self._auth, **self._headers.get(probe, {})}
        started = time.perf_counter()
        try:
            response = self._client.request(method, url, json=payload, headers=headers)
        except httpx.TimeoutException as exc:
            reply = _no_answer(probe, method, url, started, "timeout", exc)
        except httpx.ConnectError as exc:
            kind = "tls" if _is_tls(exc) else "connect"
            reply = _no_answer(probe, method, url, started, kind, exc)
        except (httpx.HTTPError, ValueError) as exc:  # protocol errors, an illegal header
            reply = _no_answer(probe, method, url, started, "protocol", exc)
        else:
            seconds = time.perf_counter() - started
            try:
                body: Any = response.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                body = None
            reply = Reply(
                method,
                url,
                response.status_code,
                probe,
                {k.lower(): v for k, v in response.headers.items()},
                body,
                response.text[:2000],
                seconds,
            )
        self.sent.append(reply)
        return reply


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE" in str(seen).upper():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _no_answer(
    probe: str, method: str, url: str, started: float, kind: str, exc: BaseException
) -> Reply:
    reason = " ".join(str(exc).split())[:160] or type(exc).__name__
    return Reply(
        method,
        url,
        None,
        probe,
        seconds=time.perf_counter() - started,
        error_kind=kind,
        error=reason,
    )
