"""The one table of operations both patches are built from.

Each `Operation` says what a call is (its `operation` label, how the classifier reads its
answer, `openai.api.type`, whether it is a request or a video poll), where the openai SDK
keeps it, and which HTTP routes reach it: the vocabulary's `operations` (`vocabulary.json`,
shared with the Node.js package). Imports nothing else from failsight.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from failsight._vocabulary import VOCABULARY

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


def _operation(entry: Mapping[str, Any]) -> Operation:
    sdk = entry["python"]
    cls = sdk["class"]
    return Operation(
        entry["operation"],
        entry["kind"],
        entry["api_type"],
        entry["role"],
        tuple((method, path) for method, path in entry["routes"]),
        tuple(
            SdkMethod(tuple(sdk["path"]), sdk["module"], cls, f"Async{cls}", name)
            for name in sdk["methods"]
        ),
    )


# Keyed by the raw-HTTP patch's route kinds (`instrument_http(routes={path: kind})`).
OPERATIONS: Final[Mapping[str, Operation]] = types.MappingProxyType(
    {kind: _operation(entry) for kind, entry in VOCABULARY["operations"].items()}
)

# Path suffix → route kind, as `instrument_http` matches them by default.
DEFAULT_ROUTES: Final[Mapping[str, str]] = types.MappingProxyType(
    {path: kind for kind, op in OPERATIONS.items() for _, path in op.routes}
)


def sdk_methods() -> tuple[tuple[Operation, SdkMethod], ...]:
    """Every (operation, SDK method) pair the SDK patch wraps."""
    return tuple((op, method) for op in OPERATIONS.values() for method in op.sdk)
