"""`instrument_openai`: the openai SDK patch, built from the operation table onto the engine.

Every method of `_operations.OPERATIONS` is wrapped (sync classes with the sync wrapper,
async classes with the async one: decided by type, never by name). A call starts an engine
`Call`; a returned stream is proxied and judged at its end; `with_raw_response` and
`with_streaming_response` answers are proxied so that their `parse()` is judged, or followed
when it returns a stream. SDK-internal retries are seen at the transport: while a call is
active, each HTTP attempt (the SDK's `x-stainless-retry-count` header) is recorded.
"""

from __future__ import annotations

import importlib
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import wrapt

from failsight import _content, _redact, _sdk_answers, _transport
from failsight._classify import classify_exception, classify_status
from failsight._engine import (
    Call,
    active_call,
    retrying_scope_site,
    send,
    send_async,
    start_call,
)
from failsight._guard import FailsightWarning, guarded, swallow
from failsight._operations import Operation, SdkMethod, sdk_methods
from failsight._provider import server_of_url
from failsight._sdk_answers import answer, declare_request
from failsight._spans import is_recording
from failsight._taxonomy import UNKNOWN, Outcome

__all__ = ["instrument_openai", "is_instrumented", "uninstrument_openai"]

RETRY_COUNT_HEADER: Final = "x-stainless-retry-count"

_RESULT: Final = guarded("call_record")
_ATTEMPT: Final = guarded("attempt")

if TYPE_CHECKING:
    _ProxyBase = wrapt.ObjectProxy[Any]
else:
    _ProxyBase = wrapt.ObjectProxy

# The SDK's Azure client classes, resolved when the patch is applied.
_azure_types: tuple[type, ...] = ()

# id(resource) -> (weak resource, server): a client's base URL is read once per resource.
_servers: dict[int, tuple[weakref.ref[Any], tuple[str, str | None, int | None]]] = {}


def _server_of(resource: Any) -> tuple[str, str | None, int | None]:
    """(provider, address, port) of the client behind a resource; its key is remembered."""
    entry = _servers.get(id(resource))
    if entry is not None and entry[0]() is resource:
        return entry[1]
    client = getattr(resource, "_client", None)
    result = server_of_url(getattr(client, "base_url", None))
    if _azure_types and isinstance(client, _azure_types):
        result = ("azure.ai.openai", *result[1:])
    key = getattr(client, "api_key", None)
    if isinstance(key, str):
        _redact.remember_secret(key)  # masked wherever it shows up, pattern or not
    try:
        if len(_servers) > 1024:
            _servers.clear()
        _servers[id(resource)] = (weakref.ref(resource), result)
    except TypeError:
        pass  # not weak-referenceable: computed each time
    return result


_warned_sites: set[str] = set()


def _warn_nested_retries(resource: Any, call_site: str) -> None:
    """Once per call site: a retrying scope around a retrying client multiplies requests."""
    if call_site in _warned_sites or len(_warned_sites) >= 1024:
        return
    retries = getattr(getattr(resource, "_client", None), "max_retries", 0)
    if isinstance(retries, int) and retries > 0:
        _warned_sites.add(call_site)
        warnings.warn(
            FailsightWarning(
                f"failsight: traced_generation(retry=...) at {call_site} wraps an openai client "
                f"with max_retries={retries}: each attempt of the scope makes up to "
                f"{retries + 1} HTTP requests. Keep retries in one place: "
                "openai.OpenAI(max_retries=0), or no retry= on the scope."
            ),
            stacklevel=4,
        )


def _start(op: Operation, resource: Any, kwargs: dict[str, Any]) -> Call | None:
    provider, address, port = _server_of(resource)
    model = kwargs.get("model")
    model = model if isinstance(model, str) and model else UNKNOWN
    retrying_site = retrying_scope_site()
    if retrying_site is not None:
        _warn_nested_retries(resource, retrying_site)
    call = start_call(op, model, provider, address, port, kwargs.get("stream") is True)
    if call is None:
        return None
    declare_request(call, kwargs)
    if call.state.settings.capture_content and is_recording(call.span):
        with _RESULT:
            limit = call.state.settings.max_content_length
            call.values.update(_content.input_messages(op.kind, kwargs, limit))
    return call


# ---------------------------------------------------------------------- wrappers


def _sync_wrapper(op: Operation) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _start(op, instance, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        result = send(call, wrapped, args, kwargs)
        try:
            return answer(call, result, kwargs, False)
        except Exception as exc:
            swallow("call_record", exc)
            call.finish(Outcome())  # only when the answer could not be recorded
            return result

    return wrapper


def _async_wrapper(op: Operation) -> Callable[..., Any]:
    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _start(op, instance, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        result = await send_async(call, wrapped, args, kwargs)
        try:
            return answer(call, result, kwargs, True)
        except Exception as exc:
            swallow("call_record", exc)
            call.finish(Outcome())
            return result

    return wrapper


# ---------------------------------------------------------------------- SDK attempts


class _Attempts:
    """Sends one HTTP attempt of the active SDK call, recording it (the transport's sender)."""

    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call = call

    def _started(self, args: Any, kwargs: Any) -> None:
        try:
            request = args[0] if args else kwargs.get("request")
            raw = request.headers.get(RETRY_COUNT_HEADER)
            self.call.attempt_started(int(raw) if raw is not None and raw.isdigit() else None)
        except Exception as exc:
            swallow("attempt", exc)

    def _ended(self, exc: BaseException | None, response: Any) -> None:
        try:
            if exc is not None:
                self.call.attempt_ended(classify_exception(exc))
            else:
                status, headers = response.status_code, response.headers
                outcome = classify_status(status, headers) if status >= 400 else None
                self.call.attempt_ended(outcome, status, headers)
        except Exception as error:
            swallow("attempt", error)

    def send(self, wrapped: Any, args: Any, kwargs: Any) -> Any:
        self._started(args, kwargs)
        try:
            response = wrapped(*args, **kwargs)
        except BaseException as exc:
            self._ended(exc, None)
            raise
        self._ended(None, response)
        return response

    async def send_async(self, wrapped: Any, args: Any, kwargs: Any) -> Any:
        self._started(args, kwargs)
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException as exc:
            self._ended(exc, None)
            raise
        self._ended(None, response)
        return response


def _claim(args: Any, kwargs: Any, is_async: bool) -> _Attempts | None:
    call = active_call.get()
    return _Attempts(call) if call is not None else None


# ---------------------------------------------------------------------- lifecycle

_lock = threading.Lock()
_patched: list[tuple[Any, str, Any]] = []  # (owner class, attribute, original)
# client -> (object, attribute) pairs set on its instances, removed on uninstrument
# client -> (object, attribute, value before) set on its objects, undone on uninstrument
_client_patches: weakref.WeakKeyDictionary[Any, list[tuple[Any, str, Any]]] = (
    weakref.WeakKeyDictionary()
)
_ABSENT: Final = object()  # an attribute that was not in the object's __dict__
# Raw-response views: (view attribute, module, sync wrapper factory, async wrapper factory).
_VIEWS: Final = (
    ("with_raw_response", "openai._legacy_response", "to_raw_response_wrapper",
     "async_to_raw_response_wrapper"),
    ("with_streaming_response", "openai._response", "to_streamed_response_wrapper",
     "async_to_streamed_response_wrapper"),
)  # fmt: skip
# client -> the clients derived from it (`with_options`, `copy`), uninstrumented with it
_derived: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Any]] = weakref.WeakKeyDictionary()


def _resolve(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _load_types() -> None:
    global _azure_types
    import openai

    _sdk_answers.set_stream_types(
        tuple(
            t for t in (getattr(openai, "Stream", None), getattr(openai, "AsyncStream", None)) if t
        )
    )
    _azure_types = tuple(
        t for t in (getattr(openai, "AzureOpenAI", None), getattr(openai, "AsyncAzureOpenAI", None))
        if t
    )  # fmt: skip


def is_instrumented() -> bool:
    """True while the global patch is on."""
    return bool(_patched)


def instrument_openai(client: Any = None) -> None:
    """Patch every OpenAI/AsyncOpenAI (and Azure) client, or only `client`.

    Idempotent. Raises ImportError when the openai package is not installed, and TypeError
    when `client` is not an `openai.OpenAI`/`openai.AsyncOpenAI` instance.

    >>> import failsight
    >>> failsight.instrument_openai()  # doctest: +SKIP
    """
    try:
        import openai
    except ImportError as exc:
        raise ImportError(
            f"instrument_openai() needs the openai package ({exc}): "
            "pip install 'failsight[openai]'",
            name=exc.name,
        ) from None

    if client is not None and not isinstance(client, (openai.OpenAI, openai.AsyncOpenAI)):
        raise TypeError(
            "failsight.instrument_openai(client) takes an openai.OpenAI or openai.AsyncOpenAI "
            f"instance (Azure too), or nothing to patch every client; got {client!r:.80}"
        )
    with _lock:
        _load_types()
        if client is not None:
            _instrument_client(client)
        elif not _patched:
            for op, method in sdk_methods():
                for cls_name, factory in (
                    (method.sync_cls, _sync_wrapper),
                    (method.async_cls, _async_wrapper),
                ):
                    owner = _resolve(method.module, cls_name)
                    original = owner.__dict__.get(method.method) if owner is not None else None
                    if original is not None:
                        wrapt.wrap_function_wrapper(owner, method.method, factory(op))
                        _patched.append((owner, method.method, original))
        _transport.register("sdk", _claim)


def uninstrument_openai(client: Any = None) -> None:
    """Undo `instrument_openai` (for `client` only, if given): originals restored exactly."""
    with _lock:
        if client is not None:
            _uninstrument_client(client)
        else:
            while _patched:
                owner, name, original = _patched.pop()
                setattr(owner, name, original)
        if not _patched and not len(_client_patches):
            _transport.unregister("sdk")


def _uninstrument_client(client: Any) -> None:
    """Remove `client`'s patches, and those of the clients derived from it."""
    for target, name, before in reversed(_client_patches.pop(client, [])):
        if before is _ABSENT:
            target.__dict__.pop(name, None)
        else:
            target.__dict__[name] = before
    for derived in list(_derived.pop(client, ())):
        _uninstrument_client(derived)


def _resource(client: Any, method: SdkMethod) -> Any:
    resource = client
    for part in method.path:
        resource = getattr(resource, part, None)
        if resource is None:
            return None
    return resource


def _instrument_client(client: Any) -> None:
    if client in _client_patches:
        return
    done: list[tuple[Any, str, Any]] = []
    for op, method in sdk_methods():
        resource = _resource(client, method)
        if resource is None:
            continue
        function = type(resource).__dict__.get(method.method)
        if function is None:
            continue
        async_cls = _resolve(method.module, method.async_cls)
        is_async = async_cls is not None and isinstance(resource, async_cls)
        original = getattr(function, "__wrapped__", function)  # the SDK's own, even if patched
        factory = _async_wrapper if is_async else _sync_wrapper
        bound = wrapt.FunctionWrapper(original, factory(op)).__get__(resource, type(resource))
        done.append((resource, method.method, resource.__dict__.get(method.method, _ABSENT)))
        resource.__dict__[method.method] = bound
        _repoint_views(resource, method.method, bound, is_async, done)
    # Derived clients (`with_options`, `copy`) of an instrumented client are instrumented.
    copy = getattr(type(client), "copy", None)
    if copy is not None:
        derive = _deriver(copy, client)
        for name in ("copy", "with_options"):
            done.append((client, name, client.__dict__.get(name, _ABSENT)))
            client.__dict__[name] = derive
    _client_patches[client] = done


def _repoint_views(
    resource: Any, name: str, bound: Any, is_async: bool, done: list[tuple[Any, str, Any]]
) -> None:
    """Raw-response views of `resource` already built (and perhaps held by the caller) call
    the method they were built with: point them at the patched one, as the SDK would."""
    for view_name, module, sync_factory, async_factory in _VIEWS:
        view = resource.__dict__.get(view_name)  # a cached_property, once read
        if view is None:
            # Built later, it will hold the patched method: forget it on uninstrument.
            done.append((resource, view_name, _ABSENT))
            continue
        if name not in getattr(view, "__dict__", {}):
            continue
        factory = _resolve(module, async_factory if is_async else sync_factory)
        if factory is not None:
            done.append((view, name, view.__dict__[name]))
            view.__dict__[name] = factory(bound)


def _deriver(copy: Callable[..., Any], client: Any) -> Callable[..., Any]:
    ref = weakref.ref(client)  # no cycle through the client's own __dict__

    def derive(*args: Any, **kwargs: Any) -> Any:
        parent = ref()
        derived = copy(parent, *args, **kwargs)
        with _RESULT, _lock:
            if parent in _client_patches:  # not uninstrumented meanwhile
                _instrument_client(derived)
                _derived.setdefault(parent, weakref.WeakSet()).add(derived)
        return derived

    return derive
