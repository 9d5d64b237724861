"""The one httpx/httpx2 `send` wrapper both patches register into.

`Client.send` and `AsyncClient.send` of httpx and httpx2 are wrapped once, while at least one
patch is registered, and restored exactly after the last one leaves. Each registrant gives
a `claim(args, kwargs, is_async)` that returns a `Sender` for the requests it records, or
None; the first claim wins (the SDK patch registers first: during an SDK call it records
the attempts, and the raw-HTTP patch stays out). Unclaimed requests pass through after the
claims' checks.
"""

from __future__ import annotations

import functools
import importlib
import threading
import types
from collections.abc import Callable
from typing import Any, Final, Protocol

from failsight._guard import swallow

__all__ = ["Sender", "register", "unregister"]


class Sender(Protocol):
    """Sends one claimed request through `wrapped`, recording around it."""

    def send(self, wrapped: Any, args: Any, kwargs: Any) -> Any: ...

    async def send_async(self, wrapped: Any, args: Any, kwargs: Any) -> Any: ...


Claim = Callable[[Any, Any, bool], "Sender | None"]  # (args, kwargs, is_async) -> sender

_lock = threading.Lock()
_claims: dict[str, Claim] = {}  # registrant name -> claim, in priority order
_ordered: tuple[Claim, ...] = ()
_patched: list[tuple[Any, str, Any]] = []  # (owner, attribute, original)
_PRIORITY: Final = ("sdk", "http")


def _sync_send(original: Any) -> Callable[..., Any]:
    """`Client.send` in front of `original`: the claims decide, else straight through.

    A plain function rather than a wrapt wrapper: every request of the process (most of them
    not to an AI route) passes here, and wrapt binds a wrapper object per call. The bound
    method a sender needs is made only for a claimed request.
    """

    # A plain function is called as is; anything else is bound first (another wrapt wrapper:
    # its proxy passes isinstance checks for a function, hence `type`).
    direct = type(original) is types.FunctionType

    @functools.wraps(original)
    def send(self: Any, *args: Any, **kwargs: Any) -> Any:
        for claim in _ordered:
            try:
                sender = claim(args, kwargs, False)
            except Exception as exc:
                swallow("http", exc)
                continue
            if sender is not None:
                return sender.send(original.__get__(self, type(self)), args, kwargs)
        if direct:
            return original(self, *args, **kwargs)
        return original.__get__(self, type(self))(*args, **kwargs)

    return send


def _async_send(original: Any) -> Callable[..., Any]:
    """`AsyncClient.send` in front of `original` (see `_sync_send`)."""

    direct = type(original) is types.FunctionType

    @functools.wraps(original)
    async def send(self: Any, *args: Any, **kwargs: Any) -> Any:
        for claim in _ordered:
            try:
                sender = claim(args, kwargs, True)
            except Exception as exc:
                swallow("http", exc)
                continue
            if sender is not None:
                return await sender.send_async(original.__get__(self, type(self)), args, kwargs)
        if direct:
            return await original(self, *args, **kwargs)
        return await original.__get__(self, type(self))(*args, **kwargs)

    return send


def _wrap(owner: Any, name: str, make: Callable[[Any], Callable[..., Any]]) -> None:
    original = owner.__dict__.get(name)
    if original is None:
        return
    setattr(owner, name, make(original))
    _patched.append((owner, name, original))


def register(name: str, claim: Claim) -> None:
    """Add (or replace) registrant `name`'s claim; wraps `send` on first registration.

    >>> register("example", lambda args, kwargs, is_async: None)
    >>> unregister("example")
    """
    global _ordered
    with _lock:
        _claims[name] = claim
        _ordered = tuple(_claims[key] for key in sorted(_claims, key=_rank))
        if _patched:
            return
        for module_name in ("httpx2", "httpx"):
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            _wrap(module.Client, "send", _sync_send)
            _wrap(module.AsyncClient, "send", _async_send)


def unregister(name: str) -> None:
    """Remove `name`'s claim; `send` is restored exactly when no registrant is left."""
    global _ordered
    with _lock:
        _claims.pop(name, None)
        _ordered = tuple(_claims[key] for key in sorted(_claims, key=_rank))
        if not _claims:
            while _patched:
                owner, attribute, original = _patched.pop()
                setattr(owner, attribute, original)


def _rank(name: str) -> int:
    return _PRIORITY.index(name) if name in _PRIORITY else len(_PRIORITY)
