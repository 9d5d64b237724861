"""Text checks: base URL, `/models`, one minimal chat call, rate limits, a `length` cut."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ._model import Check, fail, ok, skip, warn
from ._probe import Reply, error_fields
from ._secret import host_of, public_url, shown

__all__ = [
    "CHAT_PROMPT",
    "TINY_MAX_TOKENS",
    "TINY_PROMPT",
    "judge_base_url",
    "judge_chat",
    "judge_models",
    "judge_rate_limits",
    "judge_truncation",
    "no_answer",
    "not_json",
    "status_fix",
]

_GROUP = "text"
CHAT_PROMPT = "Reply with the single word: ok"
CHAT_MAX_TOKENS = 16
TINY_PROMPT = "Count from 1 to 20, separated by spaces."
TINY_MAX_TOKENS = 1
_MODEL_404 = frozenset({"model_not_found", "DeploymentNotFound"})
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def status_fix(reply: Reply) -> str:
    """3xx: use where it points; 4xx: fix the request; 429 and 5xx: retry with backoff."""
    status = reply.status or 0
    if 300 <= status < 400:
        return (
            "set --base-url to where the redirect points; the doctor (like the OpenAI SDK) "
            "does not follow it, so the key was sent nowhere else"
        )
    if status == 429:
        after = shown(reply.headers.get("retry-after", ""), 20)
        wait = f" after the {after} s the Retry-After header asks" if after else " with backoff"
        return f"429 is transient: retry{wait} (failsight's RetryPolicy honours Retry-After)"
    if status >= 500:
        return f"{status} is the server's side: retry with exponential backoff and jitter"
    if status in (401, 403):
        return "fix the key (see key.accepted): retrying will not help"
    return f"{status} is the request's fault: fix it, retrying will not help"


_FIXES = {
    "tls": "fix the certificate, or point SSL_CERT_FILE at your proxy's CA bundle",
    "connect": "check the host and port of --base-url/OPENAI_BASE_URL; is the gateway running?",
    "timeout": "check the host and any proxy; raise the client timeout only if it is just slow",
    "deadline": "raise --deadline, or find what is slow (each check above says how long it took)",
    "not_sent": "raise --deadline; the checks above say where the time went",
    "slow_body": "a proxy or gateway holds the answer open: fix it, and give your client an "
    "overall deadline (a read timeout never fires on a slow drip)",
    "too_large": "no API answers with that much: check --base-url and any proxy in front of it",
    "protocol": "check --base-url: it may not speak HTTP (or a proxy cuts the answer)",
}


def not_json(cid: str, group: str, what: str, reply: Reply) -> Check | None:
    """A failed check for a 2xx whose body is no JSON object (an HTML page, a proxy's text,
    JSON nested past reading); None for a JSON answer."""
    if isinstance(reply.body, dict):
        return None
    excerpt = shown(" ".join(reply.text.split()), 60) or "(empty)"
    return fail(
        cid,
        group,
        f"{what} answered HTTP {reply.status} without a JSON object: {excerpt}",
        "check --base-url: a web page or a proxy answers here, not the API",
        status=reply.status,
    )


def no_answer(cid: str, group: str, what: str, reply: Reply) -> Check:
    """A failed check for a request that got no answer, or no whole one (`reply.error_kind`)."""
    host = host_of(reply.url)
    kind = reply.error_kind or "protocol"
    if kind == "tls":
        finding = f"TLS failed on {host}: {reply.error}"
    elif kind == "connect":
        finding = f"cannot connect to {host}: {reply.error}"
    elif kind == "timeout":
        finding = f"{what} got no answer from {host} within the timeout ({reply.error})"
    elif kind == "deadline":
        finding = f"{what} got no answer from {host} before the doctor's deadline"
    else:
        finding = f"{what}: {reply.error}"
    details: dict[str, Any] = {"error_kind": kind, "latency_s": round(reply.seconds, 3)}
    if reply.status is not None:
        details["status"] = reply.status
    return fail(cid, group, finding, _FIXES.get(kind, _FIXES["protocol"]), **details)


def judge_base_url(base_url: str, models: Reply | None, chat: Reply | None) -> Check:
    """Reachable, TLS valid, and a path that ends where the API lives (`/v1`)."""
    cid = "text.base_url"
    parts = urlsplit(base_url)
    first = next((r for r in (models, chat) if r is not None), None)
    if first is None:
        return skip(cid, _GROUP, "no request sent")
    if first.status is None:
        return no_answer(cid, _GROUP, f"{first.method} {parts.path}/…", first)
    path = parts.path.rstrip("/")
    # A 404 that is not about the model is about the URL ("Invalid URL", "no route").
    chat_404 = chat is not None and chat.status == 404 and error_fields(chat)[0] not in _MODEL_404
    if chat_404 and not path.endswith("/v1"):
        return fail(
            cid,
            _GROUP,
            f"POST {path}/chat/completions answered 404: the base URL lacks /v1",
            f"use --base-url {public_url(base_url).rstrip('/')}/v1",
            status=404,
        )
    if chat_404:
        return fail(
            cid,
            _GROUP,
            f"POST {path}/chat/completions answered 404: no such route at this base URL",
            "check the base URL's path against the provider's docs (prefix, deployment name)",
            status=404,
        )
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        return warn(
            cid,
            _GROUP,
            f"{host_of(base_url)} is plain http: the key travels unencrypted",
            "use https",
        )
    suffix = "" if path.endswith("/v1") else " (no /v1: fine only if the provider says so)"
    tls = "TLS valid" if parts.scheme == "https" else "loopback http"
    where = host_of(base_url)
    return ok(cid, _GROUP, f"{where} answered, {tls}{suffix}", latency_s=first.seconds)


def judge_models(reply: Reply | None, model: str) -> Check:
    """`GET /models` answers, and lists the chosen model."""
    cid = "text.models"
    if reply is None:
        return skip(cid, _GROUP, "not run")
    if reply.status is None:
        return skip(cid, _GROUP, "no answer (see text.base_url)")
    if reply.error_kind is not None:
        return no_answer(cid, _GROUP, "GET /models", reply)
    if reply.status == 404:
        return warn(
            cid,
            _GROUP,
            "GET /models answered 404: this endpoint does not list models",
            "check the model name against the provider's docs instead",
            status=404,
        )
    if not reply.ok:
        code, message = error_fields(reply)
        return fail(
            cid,
            _GROUP,
            f"GET /models answered {reply.status} {code}: {message}".rstrip(": "),
            status_fix(reply),
            status=reply.status,
        )
    if (odd := not_json(cid, _GROUP, "GET /models", reply)) is not None:
        return odd
    data = reply.json_dict().get("data")
    if not isinstance(data, list):
        return warn(cid, _GROUP, "GET /models answered without a `data` list", "", status=200)
    ids = [str(item.get("id")) for item in data if isinstance(item, dict)]
    if model in ids:
        return ok(cid, _GROUP, f"GET /models lists {len(ids)} models, {model} among them")
    near = [name for name in ids if model.split("-")[0] in name][:3] or ids[:3]
    return warn(
        cid,
        _GROUP,
        f"{model} is not among the {len(ids)} models listed "
        f"(e.g. {', '.join(shown(name, 40) for name in near)})",
        f"check the spelling of --model {model}; some gateways list only part of what they "
        "serve, so a 404 on the chat call below settles it",
        listed=len(ids),
    )


def _choice(reply: Reply) -> tuple[str | None, dict[str, Any], dict[str, Any] | None]:
    body = reply.json_dict()
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else {}
    first = first if isinstance(first, dict) else {}
    message = first.get("message") if isinstance(first.get("message"), dict) else {}
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    return first.get("finish_reason"), message or {}, usage


def judge_chat(reply: Reply | None, model: str) -> Check:
    """One minimal chat call: status, finish_reason, content null or not, usage, latency."""
    cid = "text.chat"
    if reply is None:
        return skip(cid, _GROUP, "not run")
    if reply.error_kind is not None:  # sent only after /models answered: a failure of its own
        return no_answer(cid, _GROUP, "POST /chat/completions", reply)
    latency = f"{reply.seconds * 1000:.0f} ms"
    if not reply.ok:
        code, message = error_fields(reply)
        status = reply.status or 0
        kind = "retry" if status == 429 or status >= 500 else "fix the request"
        finding = f"HTTP {reply.status} {code} ({kind}): {message}".replace("  ", " ")
        if reply.status == 404 and code == "model_not_found":
            return fail(cid, _GROUP, finding, f"use a model this key can reach, not {model}")
        return fail(cid, _GROUP, finding, status_fix(reply), status=reply.status, code=code)
    if (odd := not_json(cid, _GROUP, "POST /chat/completions", reply)) is not None:
        return odd
    finish, said, usage = _choice(reply)
    finish = shown(finish, 40) if finish is not None else None
    content = said.get("content")
    details: dict[str, Any] = {
        "status": reply.status,
        "finish_reason": finish,
        "content_null": content is None,
        "usage": usage,
        "latency_s": round(reply.seconds, 3),
    }
    if finish == "content_filter":
        return fail(
            cid,
            _GROUP,
            f"HTTP 200 but finish_reason=content_filter on a harmless prompt ({latency})",
            "check the deployment's content filter policy (Azure) or the gateway's moderation",
            **details,
        )
    if content is None and finish == "tool_calls":
        return warn(
            cid,
            _GROUP,
            "content is null because finish_reason=tool_calls: the model called a tool",
            "when content is null read message.tool_calls (none were offered here)",
            **details,
        )
    if said.get("refusal"):
        return fail(cid, _GROUP, "the model refused a harmless prompt", "", **details)
    if not content:
        return fail(
            cid,
            _GROUP,
            f"HTTP 200, finish_reason={finish}, but content is {content!r}: no output",
            "treat empty content as a failure (failsight: soft/empty_content) and retry",
            **details,
        )
    if finish == "length":
        return warn(
            cid,
            _GROUP,
            f"cut at length within {CHAT_MAX_TOKENS} tokens on a one-word answer",
            "reasoning models spend tokens before answering: raise max_completion_tokens",
            **details,
        )
    if finish != "stop":
        return warn(cid, _GROUP, f"unexpected finish_reason={finish!r}", "", **details)
    if usage is None:
        return warn(
            cid,
            _GROUP,
            f"HTTP 200, stop, content present, but no usage block ({latency})",
            "token counts and costs will be missing: ask the gateway to pass usage through",
            **details,
        )
    tokens = shown(usage.get("completion_tokens"), 20)
    return ok(
        cid,
        _GROUP,
        f"HTTP 200, stop, content present, {tokens} completion tokens, {latency}",
        **details,
    )


def judge_rate_limits(replies: list[Reply]) -> Check:
    """`x-ratelimit-*` and `retry-after`, and what they mean for the retry policy."""
    cid = "text.rate_limits"
    answered = [r for r in replies if r.status is not None]
    if not answered:
        return skip(cid, _GROUP, "no answer")
    limited = next((r for r in answered if r.status == 429), None)
    if limited is not None:
        after = shown(
            limited.headers.get("retry-after") or limited.headers.get("retry-after-ms") or "", 20
        )
        if after:
            unit = (
                "ms"
                if "retry-after-ms" in limited.headers and not limited.headers.get("retry-after")
                else "s"
            )
            return warn(
                cid,
                _GROUP,
                f"rate limited now (429), retry-after {after} {unit}",
                "wait what retry-after says before retrying; failsight's RetryPolicy does",
                retry_after=after,
            )
        return warn(
            cid,
            _GROUP,
            "rate limited now (429) without retry-after",
            "back off exponentially with jitter; do not retry at once",
        )
    headers = answered[-1].headers
    found = {k: v for k, v in headers.items() if k.startswith("x-ratelimit-")}
    if not found:
        return ok(
            cid,
            _GROUP,
            "no x-ratelimit-* headers: a 429 will be the only signal",
            "keep exponential backoff with jitter and honour retry-after on 429",
        )
    remaining = {k: v for k, v in found.items() if k.startswith("x-ratelimit-remaining")}
    low = [k for k, v in remaining.items() if v.strip() in ("0", "0.0")]
    said = shown(
        ", ".join(f"{k.removeprefix('x-ratelimit-')}={v}" for k, v in sorted(remaining.items())),
        200,
    )
    if low:
        return warn(
            cid,
            _GROUP,
            f"quota exhausted: {said}",
            "the next calls will 429 until x-ratelimit-reset-*; slow down",
            headers=found,
        )
    return ok(
        cid,
        _GROUP,
        f"rate-limit headers present: {said or 'limits only'}",
        "throttle before x-ratelimit-remaining-* reaches 0",
        headers=found,
    )


def judge_truncation(reply: Reply | None) -> Check:
    """A call with a tiny `max_tokens`: what a `length` cut looks like on this endpoint."""
    cid = "text.truncation"
    if reply is None:
        return skip(cid, _GROUP, "not run")
    if reply.error_kind is not None:
        return no_answer(cid, _GROUP, "POST /chat/completions (tiny)", reply)
    if not reply.ok:
        code, message = error_fields(reply)
        if "max_tokens" in message or "max_completion_tokens" in message:
            return warn(
                cid,
                _GROUP,
                f"HTTP {reply.status}: this model rejects max_tokens ({message})",
                "send max_completion_tokens instead of max_tokens for this model",
                status=reply.status,
            )
        return fail(cid, _GROUP, f"HTTP {reply.status} {code}: {message}", status_fix(reply))
    if (odd := not_json(cid, _GROUP, "POST /chat/completions (tiny)", reply)) is not None:
        return odd
    finish, said, usage = _choice(reply)
    finish = shown(finish, 40) if finish is not None else None
    tokens = (usage or {}).get("completion_tokens")
    content = said.get("content")
    excerpt = shown(repr(content[:16]), 40) if isinstance(content, str) else "null"
    details = {"finish_reason": finish, "completion_tokens": tokens, "content": excerpt}
    if finish == "length":
        return ok(
            cid,
            _GROUP,
            f"a cut here: HTTP 200, finish_reason=length, {shown(tokens, 20)} completion tokens, "
            f"{excerpt}",
            "treat length as a failure (soft/length): raise max_tokens or shorten the input",
            **details,
        )
    if isinstance(tokens, int) and tokens > TINY_MAX_TOKENS:
        return warn(
            cid,
            _GROUP,
            f"max_tokens={TINY_MAX_TOKENS} was ignored: {tokens} completion tokens, "
            f"finish_reason={finish}",
            "this endpoint does not enforce max_tokens: cap output length yourself",
            **details,
        )
    return warn(
        cid,
        _GROUP,
        f"max_tokens={TINY_MAX_TOKENS} cut the answer but finish_reason={finish}, not length",
        "this endpoint hides truncation: validate output length yourself",
        **details,
    )
