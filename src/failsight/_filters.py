"""Why a content filter fired, when the provider says: (category, stage, severity) triples.

Azure OpenAI annotates answers with `prompt_filter_results` (stage `prompt`) and each choice's
`content_filter_results` (stage `completion`), per category, with `filtered` and a
`severity`; its 400 `content_filter` error carries the prompt's results in
`error.innererror.content_filter_result`. Gateways in front of Gemini pass its finish reasons
through (`SAFETY`, `RECITATION`, ...). Only categories that were filtered count, and every
name is normalised to the closed vocabulary (`vocabulary.json`, `filters`; `other` for the
rest), so the counter stays bounded whatever a provider sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from failsight._taxonomy import as_list, field
from failsight._vocabulary import VOCABULARY

__all__ = [
    "CATEGORIES",
    "SEVERITIES",
    "Filter",
    "filters_of_choice",
    "filters_of_error",
    "filters_of_finish_reason",
    "filters_of_response",
]

Filter = tuple[str, str, str]  # (category, stage, severity)

_FILTERS: Final = VOCABULARY["filters"]
CATEGORIES: Final[frozenset[str]] = frozenset(_FILTERS["categories"])
SEVERITIES: Final[frozenset[str]] = frozenset(_FILTERS["severities"])
_ALIASES: Final[Mapping[str, str]] = _FILTERS["aliases"]
# Gemini finish reasons a gateway may pass through (any case): each is a content filter.
GEMINI_FILTER_REASONS: Final[Mapping[str, str]] = _FILTERS["finish_reasons"]
_MAX: Final = 32  # categories read per results object: a hostile answer cannot make us loop


def category_of(name: Any) -> str:
    if not isinstance(name, str):
        return "other"
    key = name.strip().lower()[:64]
    key = _ALIASES.get(key, key)
    return key if key in CATEGORIES else "other"


def _severity(value: Any) -> str:
    if isinstance(value, str):
        key = value.strip().lower()[:16]
        if key in SEVERITIES:
            return key
    return "unknown"


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    """A results object as a mapping: a dict, or an SDK object's extra fields."""
    if isinstance(value, Mapping):
        return value
    extra = getattr(value, "model_extra", None)
    if isinstance(extra, Mapping):
        return extra
    found = getattr(value, "__dict__", None)
    return found if isinstance(found, Mapping) else None


def _filtered(results: Any, stage: str, out: list[Filter]) -> None:
    """Append the filtered categories of one `content_filter_results` object."""
    found = _as_mapping(results)
    if not found:
        return
    for n, (name, entry) in enumerate(found.items()):
        if n >= _MAX:
            break
        if isinstance(entry, list):  # custom_blocklists: a list of {filtered, id}
            if any(field(item, "filtered") is True for item in entry[:_MAX]):
                out.append((category_of(name), stage, "unknown"))
            continue
        if field(entry, "filtered") is True:
            out.append((category_of(name), stage, _severity(field(entry, "severity"))))


def filters_of_choice(choice: Any) -> list[Filter]:
    """A choice's (or a stream chunk's choice's) filtered completion categories."""
    out: list[Filter] = []
    _filtered(field(choice, "content_filter_results"), "completion", out)
    category = filters_of_finish_reason(field(choice, "finish_reason"))
    if category is not None and not out:
        out.append(category)
    return out


def filters_of_prompt(results: Any) -> list[Filter]:
    """`prompt_filter_results`: a list of {prompt_index, content_filter_results}."""
    out: list[Filter] = []
    for item in (as_list(results) or [])[:_MAX]:
        _filtered(field(item, "content_filter_results"), "prompt", out)
    return out


def filters_of_response(response: Any) -> list[Filter]:
    """Every filtered category of a chat or completions answer (SDK object or dict)."""
    out = filters_of_prompt(field(response, "prompt_filter_results"))
    for choice in (as_list(field(response, "choices")) or [])[:_MAX]:
        out.extend(filters_of_choice(choice))
    return out


def filters_of_error(body: Any) -> list[Filter]:
    """Azure's 400 `content_filter` error body: the prompt's results in `innererror`."""
    error = field(body, "error")
    error = error if error is not None else body
    inner = field(error, "innererror")
    out: list[Filter] = []
    for name in ("content_filter_result", "content_filter_results"):
        _filtered(field(inner, name), "prompt", out)
    if not out:
        out.extend(filters_of_prompt(field(error, "prompt_filter_results")))
    return out


def filters_of_finish_reason(reason: Any) -> Filter | None:
    """A Gemini finish reason passed through by a gateway, as its category."""
    if not isinstance(reason, str):
        return None
    category = GEMINI_FILTER_REASONS.get(reason.strip().lower()[:32])
    return (category, "completion", "unknown") if category is not None else None
