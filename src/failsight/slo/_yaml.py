"""A YAML writer for the SLO spec and rules: mappings, lists and strings only, no PyYAML.

Strings are written JSON-quoted (a JSON string is a YAML double-quoted scalar), multi-line
ones as literal blocks so that PromQL and runbooks read as they are written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

_INDENT = "  "


def dump(value: Mapping[str, Any]) -> str:
    """`value` as block-style YAML.

    >>> print(dump({"groups": [{"name": "a", "rules": [{"expr": "x\\n/\\ny\\n"}]}]}), end="")
    groups:
    - name: "a"
      rules:
      - expr: |
          x
          /
          y
    """
    return "".join(_mapping(value, 0))


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def _block(text: str, depth: int) -> list[str] | None:
    """`text` as a literal block scalar, when one keeps it exactly."""
    lines = text.split("\n")
    if "\n" not in text or text.startswith((" ", "\n")) or text.endswith("\n\n"):
        return None
    if any(line != line.rstrip() or "\t" in line or "\r" in line for line in lines):
        return None
    chomp = "" if text.endswith("\n") else "-"
    body = lines[:-1] if text.endswith("\n") else lines
    pad = _INDENT * (depth + 1)
    return [f"|{chomp}\n", *(f"{pad}{line}\n" if line else "\n" for line in body)]


def _entry(key: str, value: Any, depth: int) -> list[str]:
    pad = _INDENT * depth
    if isinstance(value, Mapping):
        if not value:
            return [f"{pad}{key}: {{}}\n"]
        return [f"{pad}{key}:\n", *_mapping(value, depth + 1)]
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            return [f"{pad}{key}: []\n"]
        return [f"{pad}{key}:\n", *_sequence(value, depth)]
    if isinstance(value, str) and (block := _block(value, depth)):
        return [f"{pad}{key}: {block[0]}", *block[1:]]
    return [f"{pad}{key}: {_scalar(value)}\n"]


def _mapping(value: Mapping[str, Any], depth: int) -> list[str]:
    out: list[str] = []
    for key, item in value.items():
        out.extend(_entry(str(key), item, depth))
    return out


def _sequence(value: Sequence[Any], depth: int) -> list[str]:
    pad = _INDENT * depth
    out: list[str] = []
    for item in value:
        if isinstance(item, Mapping) and item:
            lines = _mapping(item, depth + 1)
            out.append(f"{pad}- {lines[0].lstrip()}")
            out.extend(lines[1:])
        else:
            out.append(f"{pad}- {_scalar(item)}\n")
    return out
