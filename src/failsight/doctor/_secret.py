"""What came from the key or the server, made safe to print: masked first, then bounded.

The doctor's own words are never masked (its advice names `OPENAI_API_KEY=<your key>`); the
server's words are, as they arrive, before anything else reads them: every spelling of the
exact key (however short, tabs and all), then anything shaped like a credential. `printable`
escapes what a terminal would act on (control characters, lone surrogates) on every line.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

from failsight._redact import MASK, mask_secrets

__all__ = ["KeyMask", "host_of", "printable", "public_url", "shown", "url_secrets"]

_QUOTES: Final = "\"'"
_LOOKAHEAD: Final = 256  # read past a cut, so that a credential across it is masked whole


def _variants(value: str) -> set[str]:
    """The key as a server may echo it: as set, stripped, with its whitespace collapsed."""
    bare = value.replace("\r", "").replace("\n", "")
    found = {value, bare, value.strip(), bare.strip(), bare.strip().strip(_QUOTES).strip()}
    for form in tuple(found):
        found.add(" ".join(form.split()))  # a message that collapsed the key's tab
        found.add("".join(form.split()))
        if form[:7].lower() == "bearer ":
            found.add(form[7:].strip())
    return {form for form in found if form}


def _spellings(value: str) -> set[str]:
    """`value` itself, and as JSON, a repr and a URL write it."""
    found = {value}
    for spell in (
        lambda s: json.dumps(s)[1:-1],
        lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
        lambda s: repr(s)[1:-1],
        lambda s: quote(s, safe=""),
        quote,
    ):
        with contextlib.suppress(UnicodeError, ValueError):  # e.g. a lone surrogate
            found.add(spell(value))
    return {form for form in found if form}


class KeyMask:
    """Masks the doctor's key, in every spelling, out of server text; then credential shapes.

    >>> mask = KeyMask(["sk-1234"])
    >>> mask.text("Incorrect API key provided: sk-1234.")
    'Incorrect API key provided: ***.'
    >>> mask.value({"error": {"message": ["sk-1234"]}})
    {'error': {'message': ['***']}}
    """

    def __init__(self, keys: Iterable[str | None]) -> None:
        forms: set[str] = set()
        for key in keys:
            if key:
                for variant in _variants(key):
                    forms |= _spellings(variant)
        self.forms = tuple(sorted(forms, key=len, reverse=True))  # a key holding another: whole

    def text(self, text: str, limit: int | None = None) -> str:
        """`text` with the key masked (exact spellings first), then anything key-shaped; cut
        to `limit` characters (plus "…") after masking, so a cut key leaks no prefix."""
        if limit is not None and len(text) > limit:
            text = text[: limit + (len(self.forms[0]) if self.forms else 0) + _LOOKAHEAD]
        # Until none is left: masking one occurrence can join two pieces into another.
        while any(form in text for form in self.forms):
            for form in self.forms:
                text = text.replace(form, MASK)
        if limit is None or len(text) <= limit:
            return mask_secrets(text, limit=len(text) + 1)
        return mask_secrets(text, limit=limit)

    def value(self, value: Any) -> Any:
        """Every string in a parsed JSON value (keys too) through `text`."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else char


def printable(text: str) -> str:
    """`text` with what a terminal would act on, or cannot encode, spelled out as escapes:
    control characters (ANSI escapes, tabs, newlines), format characters (bidi overrides)
    and lone surrogates.

    >>> printable("denied \\ud800 \\x1b[2J")
    'denied \\\\ud800 \\\\x1b[2J'
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else _escaped(c) for c in text)


def shown(value: Any, limit: int = 80) -> str:
    """A server-sent value in a finding: one printable line of at most `limit` characters.

    >>> shown("x" * 100, 10)
    'xxxxxxxxxx…'
    """
    text = printable(value if isinstance(value, str) else str(value))
    return text if len(text) <= limit else text[:limit] + "…"


def url_secrets(url: str) -> list[str]:
    """What a URL carries in its userinfo (``https://user:key@host``): masked like the key.

    >>> url_secrets("https://gw-user:s3cret@gw.example/v1")
    ['gw-user', 's3cret']
    """
    parts = urlsplit(url)
    return [part for part in (parts.username, parts.password) if part]


def public_url(url: str) -> str:
    """`url` as the screen shows it: no userinfo, query credentials masked, printable.

    >>> public_url("https://user:s3cret@gw.example/v1?api-key=abcd1234")
    'https://***@gw.example/v1?api-key=***'
    """
    parts = urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
    return printable(mask_secrets(urlunsplit(parts), limit=2000))


def host_of(url: str) -> str:
    """`host:port` of `url`, without the userinfo a netloc may carry.

    >>> host_of("https://user:s3cret@gw.example:8443/v1")
    'gw.example:8443'
    """
    return printable(urlsplit(url).netloc.rpartition("@")[2])
