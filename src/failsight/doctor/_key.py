"""The key: present, and shaped like a key (no newline, quotes, spaces or `Bearer `).

Nothing here prints the key: findings name its length and a known public prefix only.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from failsight._provider import provider_for_host

from ._model import Check, fail, ok, warn
from ._probe import Reply, error_fields

__all__ = ["judge_auth", "judge_key", "usable_key"]

_GROUP = "key"
# Public prefixes, safe to print; the longest first.
_PREFIXES = ("sk-proj-", "sk-svcacct-", "sk-admin-", "sk-or-v1-", "sk-ant-", "sk-")
_QUOTES = "\"'"


def _peeled(raw: str) -> tuple[str, list[str]]:
    """The key as the checks send it, and what was peeled off to get there, in order:
    line ends (anywhere: a pasted one), surrounding whitespace, quotes, a leading `Bearer `."""
    key, found = raw, []
    while True:
        before = key
        if "\r" in key or "\n" in key:
            key = key.replace("\r", "").replace("\n", "")
            found.append("newline")
        if key != key.strip():
            key = key.strip()
            found.append("whitespace")
        if key and (key[0] in _QUOTES or key[-1] in _QUOTES):
            key = key.strip(_QUOTES)
            found.append("quotes")
        if key[:7].lower() == "bearer ":
            key = key[7:]
            found.append("bearer")
        if key == before:
            return key, list(dict.fromkeys(found))


def usable_key(raw: str | None) -> str | None:
    """The key as the remaining checks send it: without line ends (anywhere: a pasted one),
    surrounding whitespace and quotes, or a leading `Bearer `.

    >>> usable_key('"Bearer sk-abc"\\n')
    'sk-abc'
    """
    if raw is None:
        return None
    return _peeled(raw)[0] or None


def _prefix(key: str) -> str:
    return next((p for p in _PREFIXES if key.startswith(p)), "")


def key_header_for(base_url: str, chosen: str | None) -> str:
    """The header the key goes in: `chosen`, else Azure OpenAI's `api-key` on its hosts, else
    `Authorization` (as `Bearer <key>`)."""
    if chosen:
        return chosen
    host = urlsplit(base_url).hostname
    return "api-key" if provider_for_host(host) == "azure.ai.openai" else "Authorization"


def _sent_as(header: str) -> str:
    return "Bearer" if header.lower() == "authorization" else f"the {header} header"


def _newline(raw: str) -> str:
    inner = raw.strip("\r\n")
    if "\n" in inner or "\r" in inner:
        return "inside it"
    return "at its start" if raw[:1] in "\r\n" and raw[-1:] not in "\r\n" else "at its end"


def _problems(raw: str, key: str, peeled: list[str]) -> list[tuple[str, str]]:
    """Every way `raw` is not a bare key: (what is wrong, its fix)."""
    said = {
        "newline": (
            f"a newline {_newline(raw)} (pasted with its line end)",
            "set it again without the newline (pipe the pasted value through tr -d '\\r\\n')",
        ),
        "whitespace": ("whitespace at its start or end", "drop the spaces around it"),
        "quotes": (
            "quotes around it, which would be sent as part of it",
            "drop the quotes (in .env files too)",
        ),
        "bearer": (
            "a leading 'Bearer ': the header would read 'Bearer Bearer …'",
            "keep only the key: the client adds 'Bearer '",
        ),
    }
    found = [said[name] for name in peeled]
    inner = sorted({_SPACE_NAMES.get(c, "whitespace") for c in key if c.isspace()})
    if inner:  # sent as is: the checks cannot know which part is the key
        found.append((f"{' and '.join(inner)} inside it", "a key has no whitespace: copy it again"))
    return found


_SPACE_NAMES = {"\t": "a tab", " ": "a space"}
_REMOVED = {"newline": "the newline", "whitespace": "the surrounding whitespace",
            "quotes": "the quotes", "bearer": "'Bearer '"}  # fmt: skip


def judge_key(
    raw: str | None, env_name: str, base_url: str, header: str = "Authorization"
) -> Check:
    """Is the key set, and would it be sent intact as `Authorization: Bearer <key>`? Every
    problem is named, not the first one only."""
    cid = "key.shape"
    if raw is None:
        return fail(
            cid,
            _GROUP,
            f"{env_name} is not set: no request was sent",
            f"export {env_name}=<your key> (or --api-key-env NAME for a gateway's variable)",
        )
    key, peeled = _peeled(raw)
    if not key:
        return fail(cid, _GROUP, f"{env_name} is set but empty", f"put the key in {env_name}")
    problems = _problems(raw, key, peeled)
    if problems:
        removed = [_REMOVED[name] for name in peeled]
        ran = (
            f"; the other checks ran with {', '.join(removed[:-1])}"
            f"{' and ' if len(removed) > 1 else ''}{removed[-1]} removed"
            if removed
            else ""
        )
        return fail(
            cid,
            _GROUP,
            f"{env_name} has {'; '.join(what for what, _ in problems)}{ran}",
            f"set {env_name} again: {'; '.join(fix for _, fix in problems)}",
            length=len(raw),
            problems=[what for what, _ in problems],
        )
    prefix = _prefix(key)
    host = urlsplit(base_url).hostname or ""
    warnings = []
    if host == "api.openai.com" and not prefix:
        warnings.append(
            (
                f"{env_name} does not start with 'sk-' but the base URL is api.openai.com",
                "use an OpenAI key here, or set --base-url to your gateway",
            )
        )
    if len(key) < 20:
        warnings.append(
            (
                f"{env_name} is only {len(key)} characters: a truncated paste?",
                f"copy the whole key into {env_name}",
            )
        )
    if warnings:
        return warn(
            cid,
            _GROUP,
            "; ".join(what for what, _ in warnings),
            "; ".join(fix for _, fix in warnings),
            length=len(key),
        )
    shown = f"prefix '{prefix}'" if prefix else "no sk- prefix (fine for gateways and Azure)"
    return ok(
        cid,
        _GROUP,
        f"{env_name} is set, {len(key)} characters, {shown}, sent as {_sent_as(header)}",
        length=len(key),
        prefix=prefix,
    )


def judge_auth(replies: Sequence[Reply], env_name: str, header: str = "Authorization") -> Check:
    """Did the endpoint accept the key? A 401/403 on any request says no."""
    cid = "key.accepted"
    answered = [reply for reply in replies if reply.status is not None]
    if not answered:
        return Check(cid, _GROUP, "skip", "no request was answered", "")
    for reply in answered:
        if reply.status == 401:
            code, message = error_fields(reply)
            return fail(
                cid,
                _GROUP,
                f"401 on {reply.method} {_path(reply.url)}: the key in {env_name}, sent as "
                f"{_sent_as(header)}, was refused" + (f" ({code})" if code else ""),
                f"put a valid, active key in {env_name}; a gateway needs its own key, "
                "not the upstream provider's; Azure OpenAI keys go in api-key "
                "(--api-key-header)",
                status=401,
                code=code,
                message=message,
            )
    for reply in answered:
        if reply.status == 403:
            code, message = error_fields(reply)
            return fail(
                cid,
                _GROUP,
                f"403 on {reply.method} {_path(reply.url)}: the key in {env_name} works but "
                f"lacks access: {message}",
                "grant the key's project access to this model or endpoint",
                status=403,
                code=code,
            )
    if not any(reply.ok for reply in answered):
        return Check(cid, _GROUP, "skip", "no request got far enough to test the key", "")
    return ok(cid, _GROUP, f"the endpoint accepted the key from {env_name}")


def _path(url: str) -> str:
    return urlsplit(url).path or "/"
