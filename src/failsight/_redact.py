"""Redaction: keys masked out of any text failsight records or logs, reasons made label-safe.

Imports nothing from the rest of failsight.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["mask_secrets", "sanitize_reason"]


_SECRET_PATTERNS: Final = (
    # Schemes first: a key prefix glued before one ("pk-Bearer …") would hide the scheme word.
    (re.compile(r"(?i)(bearer)\s+(?:bearer\s+)*[A-Za-z0-9._~+/=\-]{4,}"), r"\1 ***"),
    (re.compile(r"(?i)\b(basic)\s+[A-Za-z0-9._~+/=\-]{4,}"), r"\1 ***"),
    (re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-]{6,}"), r"\1-***"),
    # Glued to a preceding word (e.g. after an escape in a repr): only key-length runs.
    (re.compile(r"(sk|pk|rk)-[A-Za-z0-9_\-]{20,}"), r"\1-***"),
    (
        re.compile(
            r"(?i)(?<![a-z0-9])(api[_-]?key|access[_-]?token|token|secret|password|key)"
            r"([\"']?\s*[=:]\s*[\"']?)[^\s\"'&,;]{4,}"
        ),
        r"\1\2***",
    ),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), "AIza***"),
)
# Characters past `limit` read so that a key cut by the truncation is still masked whole.
_MASK_LOOKAHEAD: Final = 256


# Every pattern needs one of these (lower-cased): most texts skip the regular expressions.
_TRIGGERS: Final = ("sk-", "pk-", "rk-", "bearer", "basic", "key", "token", "secret", "password",
                    "aiza")  # fmt: skip


def _mask(text: str) -> str:
    lowered = text.lower()
    for trigger in _TRIGGERS:
        if trigger in lowered:
            break
    else:
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_secrets(text: str, limit: int = 1024) -> str:
    """Mask anything that looks like a credential and truncate to `limit` characters.

    Masking comes first, so a key straddling the limit leaks no prefix.

    >>> mask_secrets("Incorrect API key provided: sk-abc123def456")
    'Incorrect API key provided: sk-***'
    """
    if len(text) <= limit:
        return _mask(text)  # masking never lengthens a text
    window = limit + _MASK_LOOKAHEAD
    while True:
        masked = _mask(text[:window])
        # Done when the whole text was read, or when whatever the window cut (an unmasked
        # key prefix at most) is still far past the limit after masking shortened the text.
        if window >= len(text) or len(masked) >= limit + _MASK_LOOKAHEAD // 2:
            break
        window *= 4
    if len(masked) > limit:
        masked = masked[:limit] + "…"
    return masked


_REASON_OK: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def sanitize_reason(name: str, limit: int = 40) -> str:
    """A label-safe reason from a validator's name: lower snake case, bounded."""
    out = []
    last_underscore = True
    for char in name.lower()[: limit * 2]:
        if char in _REASON_OK:
            out.append(char)
            last_underscore = char == "_"
        elif not last_underscore:
            out.append("_")
            last_underscore = True
    reason = "".join(out).strip("_")[:limit]
    return reason or "validator"
