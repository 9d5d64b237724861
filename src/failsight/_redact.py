"""Redaction: keys masked out of any text failsight records or logs, reasons made label-safe.

Two layers, both in `mask_secrets`:

- exact keys: every key given to `remember_secret` (the patches pass the API key of each
  client they see) is masked wherever it appears, whatever its shape;
- patterns: anything shaped like a credential: provider key prefixes, `Bearer …`,
  `api_key=…`, header reprs, URL signatures, a long opaque run after a key word.

The patterns are the vocabulary's (`vocabulary.json`, `secrets`), shared with the Node.js
package. Imports nothing else from failsight.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple
from urllib.parse import quote

from failsight._vocabulary import VOCABULARY

__all__ = [
    "mask_remembered",
    "mask_secrets",
    "remember_secret",
    "rule_ids_matching",
    "sanitize_reason",
]

# --------------------------------------------------------------------------- patterns


def _word(*words: str) -> str:
    """A regex matching any of `words` (regex fragments, any case) at the start of a word.

    Its first letter comes first as a character set, so that the regex engine skips ahead
    to candidate positions in C instead of trying every position (several times faster
    than a leading `(?i)(?<![a-z0-9])(?:…)`).
    """
    by_first: dict[str, list[str]] = {}
    for word in words:
        by_first.setdefault(word[0], []).append(word[1:])
    firsts = "".join(sorted(c + c.upper() for c in by_first))
    rests = "|".join(f"(?<={c})(?:{'|'.join(r)})" for c, r in by_first.items())
    return rf"[{firsts}](?<![A-Za-z0-9].)(?i:{rests})"


_SECRETS: Final = VOCABULARY["secrets"]
MASK: Final[str] = _SECRETS["mask"]

# Request, trace and span ids are runs of 32 hex too. Alone they are kept (no key word before
# them); labelled as ids right before them they are kept even after a key word.
_ID_LABEL: Final = re.compile(_SECRETS["id_label"])


def _not_an_id(match: re.Match[str]) -> bool:
    return _ID_LABEL.search(match["gap"]) is None


def _has_long_run(text: str) -> bool:
    # A run of 32 letters or digits holds an aligned block of 16: a dozen C calls per 200
    # characters instead of a regex scan of every position.
    return any(text[i : i + 16].isalnum() for i in range(0, len(text) - 15, 16))


_Accept = Callable[[re.Match[str]], bool]
_Rule = tuple[frozenset[str], re.Pattern[str], _Accept | None, Callable[[str], bool] | None]
_ACCEPT: Final[dict[str, _Accept]] = {"not_an_id": _not_an_id}
_PRECHECK: Final[dict[str, Callable[[str], bool]]] = {"long_run": _has_long_run}
_MACRO: Final = re.compile(r"\{\{(\w+)(?::([^}]*))?\}\}")


def _expand(pattern: str) -> str:
    """A vocabulary pattern in Python's syntax: `{{key}}`, `{{token}}`, `{{words:a,b}}` expanded."""

    def macro(match: re.Match[str]) -> str:
        name, words = match.group(1), match.group(2)
        return _word(*words.split(",")) if name == "words" else str(_SECRETS["macros"][name])

    return _MACRO.sub(macro, pattern)


def _rule(entry: Mapping[str, Any]) -> _Rule:
    accept, precheck = entry.get("accept"), entry.get("precheck")
    return (
        frozenset(entry["triggers"]),
        re.compile(_expand(entry["pattern"])),
        None if accept is None else _ACCEPT[accept],
        None if precheck is None else _PRECHECK[precheck],
    )


# Each match's `secret` group is masked. Every rule reads the original text, so no rule
# can hide another's match (a prefix glued before a key word: "pk-Bearer …",
# "pk-Ocp-Apim-Subscription-Key: …"). A rule runs only when the text has one of its
# triggers, each a substring of anything it matches (lower-cased, unless it has capitals),
# and its precheck passes.
_RULE_IDS: Final[tuple[str, ...]] = tuple(entry["id"] for entry in _SECRETS["rules"])
_RULES: Final[tuple[_Rule, ...]] = tuple(_rule(entry) for entry in _SECRETS["rules"])


def rule_ids_matching(text: str) -> frozenset[str]:
    """Ids of the vocabulary's secret rules that find a secret in `text` (tests, docs).

    >>> sorted(rule_ids_matching("Authorization: Bearer abc.DEF-ghi_123"))
    ['bearer']
    """
    return frozenset(
        rule_id
        for rule_id, (_, pattern, accept, precheck) in zip(_RULE_IDS, _RULES, strict=True)
        if (precheck is None or precheck(text))
        and any(accept is None or accept(match) for match in pattern.finditer(text))
    )


# A trigger with a rarer character is looked for only when the text has that character.
_GATE_OF: Final = {"gh": "_", "github": "_", "sig": "=", "xai-": "x", "pplx-": "x"}


def _gates() -> tuple[tuple[str, bool, tuple[str, ...]], ...]:
    """(gate, cased, triggers): `cased` triggers are looked for in the text as it is."""
    gates: dict[tuple[str, bool], list[str]] = {}
    for trigger in sorted({t for rule in _RULES for t in rule[0]}):
        cased = trigger != trigger.lower()
        if trigger in _GATE_OF:
            gate = _GATE_OF[trigger]
        elif cased:
            gate = next(c for c in trigger if c.isupper())
        else:
            gate = next((c for c in "_-=" if c in trigger), "")
        gates.setdefault((gate, cased), []).append(trigger)
    return tuple((gate, cased, tuple(ts)) for (gate, cased), ts in sorted(gates.items()))


_GATES: Final = _gates()


def _any_trigger(text: str, lowered: str) -> bool:
    """`_triggers(text) is not None`, unrolled: the one cost most texts pay (tested equal)."""
    return (
        "key" in lowered
        or "token" in lowered
        or "secret" in lowered
        or "passw" in lowered
        or "bearer" in lowered
        or "basic" in lowered
        or "ya29." in lowered
        or ("-" in lowered and "k-" in lowered)
        or ("x" in lowered and ("xai-" in lowered or "pplx-" in lowered))
        or ("_" in lowered and ("k_" in lowered or "gh" in lowered or "hf_" in lowered
                                or "r8_" in lowered or "github" in lowered))
        or ("=" in lowered and ("sig" in lowered or "code=" in lowered))
        or ("A" in text and ("AKIA" in text or "ASIA" in text or "AIza" in text))
        or ("J" in text and ("eyJ" in text or "JQQJ9" in text))
    )  # fmt: skip


def _triggers(text: str) -> set[str] | None:
    """The rule triggers in `text`, None when there is none (most texts)."""
    lowered = text.lower()
    if not _any_trigger(text, lowered):
        return None
    return {
        trigger
        for gate, cased, triggers in _GATES
        if gate in (haystack := text if cased else lowered)
        for trigger in triggers
        if trigger in haystack
    }


# --------------------------------------------------------------------------- exact keys

_MAX_REMEMBERED: Final = 64
_MIN_SECRET_LENGTH: Final = 8  # shorter values ("EMPTY", "sk-test") would mask common words
_MAX_SECRET_LENGTH: Final = 4096


class _Remembered(NamedTuple):
    """A snapshot, replaced whole (copy on write): readers take no lock."""

    keys: tuple[str, ...]  # as given, oldest first
    forms: tuple[str, ...]  # every spelling of every key, longest first
    longest: int


_remembered = _Remembered((), (), 0)
_remember_lock = threading.Lock()

_SPELLINGS: Final[tuple[Callable[[str], str], ...]] = (
    lambda s: repr(s.encode())[2:-1],  # in a bytes repr: b'…'
    lambda s: repr(s)[1:-1],
    lambda s: json.dumps(s)[1:-1],
    lambda s: quote(s, safe=""),
    quote,  # in a URL path
)


def _forms(key: str) -> set[str]:
    """The spellings of `key` in text: itself, in a bytes or str repr, JSON, a URL."""
    forms = {key}
    scheme, _, token = key.partition(" ")
    if scheme.lower() in ("bearer", "basic") and len(token.strip()) >= _MIN_SECRET_LENGTH:
        forms.add(token.strip())  # a header value: the credential alone is masked too
    for form in tuple(forms):
        for spell in _SPELLINGS:
            with contextlib.suppress(UnicodeError, ValueError):  # e.g. a lone surrogate
                forms.add(spell(form))
    return forms


def remember_secret(value: str) -> None:
    """Mask `value` wherever it appears in any later `mask_secrets` text, pattern or not.

    For the API key of each client failsight sees (or an `Authorization`/`api-key` header
    value). Its bytes-repr, repr, JSON and URL-encoded spellings are masked too. At most 64
    keys are kept, the oldest dropped (one seen again is kept); values shorter than 8
    characters, and anything not a string, are ignored. Cheap for a key already
    remembered: no lock, no copy.

    >>> mask_secrets("denied for a1b2c3d4e5f6")
    'denied for a1b2c3d4e5f6'
    >>> remember_secret("a1b2c3d4e5f6")
    >>> mask_secrets("denied for a1b2c3d4e5f6")
    'denied for ***'
    >>> mask_secrets("headers: [(b'x-custom', b'a1b2c3d4e5f6')]")
    "headers: [(b'x-custom', b'***')]"
    >>> _forget_secrets("a1b2c3d4e5f6")
    """
    global _remembered
    if not isinstance(value, str) or not _MIN_SECRET_LENGTH <= len(value) <= _MAX_SECRET_LENGTH:
        return
    keys = _remembered.keys
    # Known, and in no danger of being dropped soon: nothing to do.
    if value in keys and (len(keys) < _MAX_REMEMBERED or value in keys[len(keys) // 2 :]):
        return
    with _remember_lock:
        kept = tuple(key for key in _remembered.keys if key != value)
        keys = (*kept[-(_MAX_REMEMBERED - 1) :], value)
        forms = sorted({form for key in keys for form in _forms(key)}, key=len, reverse=True)
        _remembered = _Remembered(keys, tuple(forms), len(forms[0]))


def _forget_secrets(*values: str) -> None:
    """Forget `values`, or every remembered key (tests)."""
    global _remembered
    with _remember_lock:
        keys = tuple(key for key in _remembered.keys if values and key not in values)
        forms = sorted({form for key in keys for form in _forms(key)}, key=len, reverse=True)
        _remembered = _Remembered(keys, tuple(forms), len(forms[0]) if forms else 0)


def _mask_remembered(text: str, forms: tuple[str, ...]) -> str:
    # Until none is left: masking one occurrence can join two pieces into another.
    while True:
        for form in forms:
            if form in text:
                break
        else:
            return text
        for form in forms:  # longest first: a key containing another is masked whole
            text = text.replace(form, MASK)


def mask_remembered(text: str) -> str:
    """`text` with every remembered key masked (any spelling); no pattern is applied.

    For the short values a server sends back and failsight records as they are (a response's
    model or id): a key echoed there is masked, and a model name is never mistaken for a key.
    A few substring checks when no key is in it.

    >>> remember_secret("a1b2c3d4e5f6")
    >>> mask_remembered("chatcmpl-a1b2c3d4e5f6"), mask_remembered("my-task-classifier-v2-0513")
    ('chatcmpl-***', 'my-task-classifier-v2-0513')
    >>> _forget_secrets("a1b2c3d4e5f6")
    """
    forms = _remembered.forms
    for form in forms:
        if form in text:
            return _mask_remembered(text, forms)
    return text


# --------------------------------------------------------------------------- masking


def _mask(text: str, forms: tuple[str, ...]) -> str:
    found = _triggers(text)
    if found is None and not forms:
        return text
    spans: list[tuple[int, int]] = []
    for form in forms:  # remembered keys
        start = text.find(form)
        while start >= 0:
            spans.append((start, start + len(form)))
            start = text.find(form, start + len(form))
    if found is not None:
        for triggers, pattern, accept, precheck in _RULES:
            if found.isdisjoint(triggers) or (precheck is not None and not precheck(text)):
                continue
            spans.extend(
                match.span("secret")
                for match in pattern.finditer(text)
                if accept is None or accept(match)
            )
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    done = 0  # text[:done] is written
    start, end = spans[0]
    for next_start, next_end in spans[1:]:
        if next_start <= end:  # overlapping or touching: one mask
            end = max(end, next_end)
            continue
        out += (text[done:start], MASK)
        done, start, end = end, next_start, next_end
    out += (text[done:start], MASK, text[end:])
    masked = "".join(out)
    return _mask_remembered(masked, forms) if forms else masked


# Characters past `limit` read so that a key cut by the truncation is still masked whole.
_MASK_LOOKAHEAD: Final = 256


def mask_secrets(text: str, limit: int = 1024) -> str:
    """Mask every remembered key and anything that looks like a credential, then truncate
    to `limit` characters (plus "…").

    Masking comes first, so a key straddling the limit leaks no prefix.

    >>> mask_secrets("Incorrect API key provided: sk-abc123def456")
    'Incorrect API key provided: sk-***'
    >>> mask_secrets("invalid subscription key '0123456789abcdef0123456789abcdef'")
    "invalid subscription key '***'"
    >>> mask_secrets("x-request-id: 0123456789abcdef0123456789abcdef")  # no key word: kept
    'x-request-id: 0123456789abcdef0123456789abcdef'
    >>> mask_secrets("POST /api/chat?code=abc123&sig=x%2By")
    'POST /api/chat?code=***&sig=***'
    """
    state = _remembered  # one read: a consistent snapshot without a lock
    forms = state.forms
    if len(text) <= limit:
        for form in forms:
            if form in text:
                break
        else:
            if not _any_trigger(text, text.lower()):
                return text  # most texts: a dozen substring checks, one per remembered key
        return _mask(text, forms)  # a mask is never longer than what it hides
    # A remembered key cut by the window leaves at most its `longest - 1` first characters.
    reach = max(_MASK_LOOKAHEAD // 2, state.longest)
    window = limit + _MASK_LOOKAHEAD + state.longest
    while True:
        masked = _mask(text[:window], forms)
        # Done when the whole text was read, or when whatever the window cut (an unmasked
        # key prefix at most) is still past the limit after masking shortened the text.
        if window >= len(text) or len(masked) >= limit + reach:
            break
        window *= 4
    if len(masked) > limit:
        masked = masked[:limit] + "…"
        if forms:  # a key ending in "…" could be rebuilt by the cut
            masked = _mask_remembered(masked, forms)
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
