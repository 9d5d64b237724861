"""JSON Schema checks of declared tools and structured output, with `jsonschema` when installed.

`check(schema, instance)` says whether `instance` matches `schema`: True, False, or None when it
was not checked (no `jsonschema`, a schema past the bounds, an error inside the validator).
Pure: no telemetry, nothing from failsight but the vocabulary (its `declared.limits`); an error
is returned to the caller, who counts it (`telemetry_errors_total{stage="schema"}`).

Validators are built once per schema and kept in a bounded LRU cache (`schema_cache_size`,
256 entries). The key is `id(schema)` with an identity check, never a hash of the schema's
content: hashing a large schema on every call would cost what the cache saves. The entry holds
the schema itself, so its id cannot be reused by another object while it is cached; a schema
built afresh for every request (e.g. `Model.model_json_schema()` inside the call) misses the
cache and is compiled each time, and the LRU order drops it. Only schemas of at most
`max_schema_nodes` nodes (5,000) and `max_schema_depth` levels (64) are validated and cached,
which bounds both the cache's memory and the work one schema can ask for; a larger schema is
counted once per call (the count stops at the bound) and left unchecked.

Remote references are never fetched: validators resolve `$ref` in a registry holding the
JSON Schema metaschemas and refusing any other URI (an unresolvable reference makes the check
None). `uniqueItems` is judged on arrays of at most `max_unique_items` (1,000) items only: the
reference implementation compares unsortable items pairwise. `format` is not asserted.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, Final

from failsight._vocabulary import VOCABULARY

__all__ = ["available", "cache_size", "check", "clear_cache"]

logger = logging.getLogger("failsight")

_LIMITS: Final[Mapping[str, int]] = VOCABULARY["declared"]["limits"]
MAX_SCHEMA_NODES: Final = _LIMITS["max_schema_nodes"]
MAX_SCHEMA_DEPTH: Final = _LIMITS["max_schema_depth"]
MAX_UNIQUE_ITEMS: Final = _LIMITS["max_unique_items"]
CACHE_SIZE: Final = _LIMITS["schema_cache_size"]

_UNCHECKED: Final = object()  # the module could not be imported (remembered once)
_module: Any = None
_registry: Any = None
_bounded: dict[type, type] = {}  # validator class -> its class with a bounded uniqueItems
_cache: OrderedDict[int, tuple[Any, Any]] = OrderedDict()  # id(schema) -> (schema, validator)
_lock = threading.Lock()


def _refuse(uri: str) -> Any:
    from referencing import exceptions

    refused: Any = exceptions.NoSuchResource
    raise refused(ref=uri)


def _jsonschema() -> Any:
    """The `jsonschema` module, or None when it is not installed (said once, in the log)."""
    global _module, _registry
    found = _module
    if found is None:
        try:
            import jsonschema  # type: ignore[import-untyped]
            import referencing
            from jsonschema_specifications import (  # type: ignore[import-untyped]
                REGISTRY as SPECIFICATIONS,
            )
        except ImportError:
            found = _UNCHECKED
            logger.warning(
                "failsight: jsonschema is not installed, so tool arguments and structured output "
                "are judged as JSON only, not against their declared schemas: "
                "pip install 'failsight[schemas]'"
            )
        else:
            registry: Any = referencing.Registry
            _registry = SPECIFICATIONS.combine(registry(retrieve=_refuse))
            found = jsonschema
        _module = found
    return None if found is _UNCHECKED else found


def available() -> bool:
    """True when schemas are checked (`jsonschema` is installed).

    >>> available()
    True
    """
    return _jsonschema() is not None


def _within_bounds(schema: Any) -> bool:
    """At most MAX_SCHEMA_NODES values, MAX_SCHEMA_DEPTH levels deep (walked without recursion)."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(schema, 0)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_SCHEMA_NODES or depth > MAX_SCHEMA_DEPTH:
            return False
        if isinstance(value, Mapping):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)
    return True


def _with_bounded_unique_items(cls: type, module: Any) -> type:
    found = _bounded.get(cls)
    if found is not None:
        return found
    original = cls.VALIDATORS.get("uniqueItems")  # type: ignore[attr-defined]
    if original is None:
        found = cls
    else:

        def unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
            if isinstance(instance, list) and len(instance) > MAX_UNIQUE_ITEMS:
                return iter(())  # pairwise comparison past the bound: not judged
            return iter(original(validator, unique, instance, schema) or ())

        found = module.validators.extend(cls, {"uniqueItems": unique_items})
    if len(_bounded) < 16:
        _bounded[cls] = found
    return found


def _validator(schema: Any) -> Any:
    """The cached validator of `schema`, built on a miss; None when it is past the bounds."""
    key = id(schema)
    with _lock:
        entry = _cache.get(key)
        if entry is not None and entry[0] is schema:
            _cache.move_to_end(key)
            return entry[1]
    if not (isinstance(schema, bool) or _within_bounds(schema)):
        return None
    module = _jsonschema()
    if module is None:
        return None
    cls = module.validators.validator_for(schema, default=module.Draft202012Validator)
    validator = _with_bounded_unique_items(cls, module)(schema, registry=_registry)
    with _lock:
        _cache[key] = (schema, validator)
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return validator


def check(schema: Any, instance: Any) -> tuple[bool | None, BaseException | None]:
    """(whether `instance` matches `schema`, the error that stopped the check if one did).

    Never raises: a schema the validator cannot use, a reference it cannot resolve, or an
    instance nested past the interpreter's recursion limit gives (None, that error).

    >>> check({"type": "object", "required": ["city"]}, {"city": "Paris"})
    (True, None)
    >>> check({"type": "object", "required": ["city"]}, {})
    (False, None)
    """
    if not isinstance(schema, (Mapping, bool)):
        return None, None
    try:
        validator = _validator(schema)
        if validator is None:
            return None, None
        return bool(validator.is_valid(instance)), None
    except RecursionError as exc:  # a recursive schema over a deeply nested instance
        return None, exc
    except Exception as exc:  # an unresolvable `$ref`, an invalid schema, ...
        return None, exc


def cache_size() -> int:
    """How many validators are cached (bounded by `schema_cache_size`)."""
    return len(_cache)


def clear_cache() -> None:
    """Forget every cached validator (tests; `jsonschema` is looked for again)."""
    global _module
    with _lock:
        _cache.clear()
        _bounded.clear()
        _module = None
