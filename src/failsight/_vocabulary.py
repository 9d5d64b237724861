"""failsight's vocabulary, read once from `vocabulary.json`, the file the Node.js package reads too.

The data file holds every name the two packages share: failure classes and reasons, status and
finish-reason spellings, video statuses, content-filter categories, guard stages, the metric
table, span names and attributes, the operation table and the secret patterns with their test
cases (`vocabulary.schema.json` describes it). The modules that own a concept build their typed
tables from it at import; none of them spells a table of those names itself
(tests/test_vocabulary.py looks for one in both languages).

Imports nothing from failsight: every other module may read it.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

__all__ = ["VOCABULARY", "VOCABULARY_PATH", "frozen", "load_vocabulary"]

VOCABULARY_PATH: Final = Path(__file__).with_name("vocabulary.json")


def frozen(value: Any) -> Any:
    """`value` with its dicts read-only and its lists tuples, so no module can edit a table."""
    if isinstance(value, dict):
        return types.MappingProxyType({key: frozen(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(frozen(item) for item in value)
    return value


def load_vocabulary(path: Path = VOCABULARY_PATH) -> Mapping[str, Any]:
    """The vocabulary file at `path`, frozen.

    >>> load_vocabulary()["status_reasons"]["429"]["reason"]
    'rate_limited'
    """
    with path.open(encoding="utf-8") as file:
        data = json.load(file)
    if not isinstance(data, dict) or data.get("version") != 1:
        raise RuntimeError(f"failsight: {path} is not a version 1 vocabulary file")
    found: Mapping[str, Any] = frozen(data)
    return found


VOCABULARY: Final = load_vocabulary()
