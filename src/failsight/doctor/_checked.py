"""Two text checks beyond the first call: the token-limit field, and the app's own validation.

`max_tokens` is refused with a 400 by the o-series and gpt-5 models, which take
`max_completion_tokens`: the doctor re-sends the call with it and says so. `--validate`
runs one of failsight's validators on the output of a prompt of the user's: HTTP 200 with an
output that fails it is the silent failure no status code shows.
"""

from __future__ import annotations

from typing import Any

from failsight import validators

from ._model import Check, fail, ok, skip, warn
from ._probe import Reply, error_fields
from ._secret import shown
from ._text import no_answer, status_fix

__all__ = [
    "VALIDATE_MAX_TOKENS",
    "VALIDATE_SITE",
    "VALIDATORS",
    "judge_token_field",
    "judge_validation",
    "output_of",
    "parse_validator",
    "refuses_max_tokens",
]

_GROUP = "text"
VALIDATE_MAX_TOKENS = 256
VALIDATE_SITE = "failsight_doctor_validate"  # the call_site of the --validate call
VALIDATORS = "nonempty, json, oneof:A,B,... or minwords:N"


def parse_validator(spec: str) -> validators.Validator:
    """`nonempty`, `json`, `oneof:A,B` or `minwords:N` as a failsight validator; ValueError
    naming the accepted spellings otherwise (at start-up, before anything is sent)."""
    name, _, argument = spec.strip().partition(":")
    name = name.lower()
    if name == "nonempty" and not argument:
        return validators.non_empty()
    if name == "json" and not argument:
        return validators.json_output(strip_fences=True)
    if name == "oneof":
        labels = [label.strip() for label in argument.split(",") if label.strip()]
        if labels:
            return validators.one_of(*labels)
    if name == "minwords" and argument.strip().isdigit() and int(argument) >= 1:
        return validators.min_words(int(argument))
    raise ValueError(f"--validate {spec!r}: use {VALIDATORS}")


def refuses_max_tokens(reply: Reply) -> bool:
    """A 400 saying the model takes `max_completion_tokens` instead of `max_tokens`."""
    if reply.status != 400:
        return False
    error = reply.json_dict().get("error")
    param = error.get("param") if isinstance(error, dict) else None
    return param == "max_tokens" or "max_completion_tokens" in reply.text


def judge_token_field(chat: Reply | None, refusal: Reply | None) -> Check:
    cid = "text.max_tokens"
    if refusal is not None:
        code, message = error_fields(refusal)
        return warn(
            cid,
            _GROUP,
            f"max_tokens refused (HTTP 400{' ' + code if code else ''}): {message}; the other "
            "calls were sent with max_completion_tokens",
            "send max_completion_tokens to this model (the o-series and gpt-5 families refuse "
            "max_tokens)",
            status=400,
            code=code,
        )
    if chat is None or not chat.ok:
        return skip(cid, _GROUP, "no answered chat call (see text.chat)")
    return ok(cid, _GROUP, "max_tokens accepted")


def output_of(reply: Reply) -> Any:
    """The first choice's message content of a chat answer (None when there is none)."""
    choices = reply.json_dict().get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict):
            return message.get("content")
    return None


def judge_validation(reply: Reply | None, spec: str | None) -> Check:
    cid = "text.validation"
    if spec is None:
        return skip(
            cid,
            _GROUP,
            f"not run: give --validate ({VALIDATORS}) and --prompt to check your own output",
        )
    if reply is None:
        return skip(cid, _GROUP, "no answered call to validate (see text.chat)")
    if reply.error_kind is not None:
        return no_answer(cid, _GROUP, "POST /chat/completions (--validate)", reply)
    if not reply.ok:
        code, message = error_fields(reply)
        finding = f"HTTP {reply.status} {code}: {message}"
        return fail(cid, _GROUP, finding, status_fix(reply), status=reply.status)
    content = output_of(reply)
    found = validators.run(validators.prepare([parse_validator(spec)]), content)
    said = shown(repr(content), 60)
    if found is None:
        return ok(cid, _GROUP, f"the output passed --validate {spec}: {said}")
    failure_class, reason = found
    return fail(
        cid,
        _GROUP,
        f"HTTP 200 with an output, but it fails --validate {spec} ({failure_class}/{reason}):"
        f" {said}",
        "count these: @traced_generation(validate=[...]) records them as silent failures; "
        "tighten the prompt (or ask for response_format json_object)",
        reason=reason,
    )
