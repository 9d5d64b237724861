"""The one table of operations both patches are built from.

Each `Operation` says what a call is (its `operation` label, how the classifier reads its
answer, `openai.api.type`, whether it is a request or a video poll), where the openai SDK
keeps it, and which HTTP routes reach it. Imports nothing from failsight.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Final, NamedTuple

__all__ = ["DEFAULT_ROUTES", "OPERATIONS", "Operation", "SdkMethod", "sdk_methods"]


class SdkMethod(NamedTuple):
    """Where the openai SDK keeps one method of an operation."""

    path: tuple[str, ...]  # attribute path from a client to the resource
    module: str  # module holding the resource classes
    sync_cls: str
    async_cls: str
    method: str


class Operation(NamedTuple):
    """One kind of API call.

    >>> OPERATIONS["chat"].name, OPERATIONS["responses"].name
    ('chat', 'chat')
    """

    name: str  # `operation` label and gen_ai.operation.name
    kind: str  # how `classify_result` reads the answer
    api_type: str  # openai.api.type
    role: str  # "call" (a request) or "poll" (advances a video job; not a request)
    routes: tuple[tuple[str, str], ...]  # (HTTP method, path suffix) of the raw-HTTP patch
    sdk: tuple[SdkMethod, ...]

    @property
    def is_poll(self) -> bool:
        return self.role == "poll"


def _methods(path: tuple[str, ...], module: str, cls: str, *methods: str) -> tuple[SdkMethod, ...]:
    return tuple(SdkMethod(path, module, cls, f"Async{cls}", m) for m in methods)


_RES: Final = "openai.resources."

# Keyed by the raw-HTTP patch's route kinds (`instrument_http(routes={path: kind})`).
OPERATIONS: Final[Mapping[str, Operation]] = types.MappingProxyType(
    {
        "chat": Operation(
            "chat", "chat", "chat_completions", "call", (("POST", "/chat/completions"),),
            _methods(("chat", "completions"), _RES + "chat.completions", "Completions",
                     "create", "parse"),
        ),
        "text_completion": Operation(
            "text_completion", "text_completion", "completions", "call",
            (("POST", "/completions"),),
            _methods(("completions",), _RES + "completions", "Completions", "create"),
        ),
        "responses": Operation(
            "chat", "responses", "responses", "call", (("POST", "/responses"),),
            _methods(("responses",), _RES + "responses", "Responses", "create", "parse"),
        ),
        "embeddings": Operation(
            "embeddings", "embeddings", "embeddings", "call", (("POST", "/embeddings"),),
            _methods(("embeddings",), _RES + "embeddings", "Embeddings", "create"),
        ),
        "image_generation": Operation(
            "image_generation", "image", "images", "call",
            (("POST", "/images/generations"), ("POST", "/images/edits"),
             ("POST", "/images/variations")),
            _methods(("images",), _RES + "images", "Images", "generate", "edit",
                     "create_variation"),
        ),
        "video_generation": Operation(
            "video_generation", "video", "videos", "call",
            (("POST", "/videos"), ("POST", "/videos/{id}/remix")),
            _methods(("videos",), _RES + "videos", "Videos", "create", "create_and_poll",
                     "remix"),
        ),
        "video_poll": Operation(
            "video_generation", "video", "videos", "poll", (("GET", "/videos/{id}"),),
            _methods(("videos",), _RES + "videos", "Videos", "retrieve"),
        ),
    }
)  # fmt: skip

# Path suffix → route kind, as `instrument_http` matches them by default.
DEFAULT_ROUTES: Final[Mapping[str, str]] = types.MappingProxyType(
    {path: kind for kind, op in OPERATIONS.items() for _, path in op.routes}
)


def sdk_methods() -> tuple[tuple[Operation, SdkMethod], ...]:
    """Every (operation, SDK method) pair the SDK patch wraps."""
    return tuple((op, method) for op in OPERATIONS.values() for method in op.sdk)
