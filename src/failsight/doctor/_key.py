"""The key: present, and shaped like a key (no newline, quotes, spaces or `Bearer `).

Nothing here prints the key: findings name its length and a known public prefix only.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from failsight._classify import provider_for_host

from ._model import Check, fail, ok, warn
from ._probe import Reply, error_fields

__all__ = ["judge_auth", "judge_key", "usable_key"]

_GROUP = "key"
# Public prefixes, safe to print; the longest first.
_PREFIXES = ("sk-proj-", "sk-svcacct-", "sk-admin-", "sk-or-v1-", "sk-ant-", "sk-")


def usable_key(raw: str | None) -> str | None:
    """The key as the remaining checks send it: without line ends (anywhere: a pasted one),
    surrounding whitespace and quotes, or a leading `Bearer `."""
    if raw is None:
        return None
    key = raw.replace("\r", "").replace("\n", "").strip().strip("\"'").strip()
    if key.lower().startswith("bearer "):
        key = key[7:].strip()
    return key or None


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


def judge_key(
    raw: str | None, env_name: str, base_url: str, header: str = "Authorization"
) -> Check:
    """Is the key set, and would it be sent intact as `Authorization: Bearer <key>`?"""
    cid = "key.shape"
    if raw is None:
        return fail(
            cid,
            _GROUP,
            f"{env_name} is not set: no request was sent",
            f"export {env_name}=<your key> (or --api-key-env NAME for a gateway's variable)",
        )
    key = usable_key(raw)
    if key is None:
        return fail(cid, _GROUP, f"{env_name} is set but empty", f"put the key in {env_name}")
    stripped = "the other checks ran with it stripped"
    if "\n" in raw or "\r" in raw:
        inner = raw.strip("\r\n")
        where = "inside it" if "\n" in inner or "\r" in inner else "at its end"
        return fail(
            cid,
            _GROUP,
            f"{env_name} has a newline {where} (pasted with its line end); the other checks"
            " ran with the newline removed",
            "set it again without the newline (pipe the pasted value through tr -d '\\r\\n')",
            length=len(raw),
        )
    if raw != raw.strip():
        return fail(
            cid,
            _GROUP,
            f"{env_name} starts or ends with whitespace; {stripped}",
            f"set {env_name} again without the spaces",
            length=len(raw),
        )
    if raw[0] in "\"'" or raw[-1] in "\"'":
        return fail(
            cid,
            _GROUP,
            f"{env_name} is wrapped in quotes, which would be sent as part of it; {stripped}",
            f"drop the quotes from the value of {env_name} (in .env files too)",
        )
    if raw.lower().startswith("bearer "):
        return fail(
            cid,
            _GROUP,
            f"{env_name} starts with 'Bearer ': the header would read 'Bearer Bearer …'",
            f"keep only the key in {env_name}; the client adds 'Bearer '",
        )
    prefix = _prefix(key)
    host = urlsplit(base_url).hostname or ""
    if host == "api.openai.com" and not prefix:
        return warn(
            cid,
            _GROUP,
            f"{env_name} does not start with 'sk-' but the base URL is api.openai.com",
            "use an OpenAI key here, or set --base-url to your gateway",
            length=len(key),
        )
    if len(key) < 20:
        return warn(
            cid,
            _GROUP,
            f"{env_name} is only {len(key)} characters: a truncated paste?",
            f"copy the whole key into {env_name}",
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
