"""Masking (`failsight._redact`): provider key shapes, exact remembered keys, the log sink.

Everything here runs without a network, a server or the patch: these are the units every
span attribute and every log line of failsight goes through.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from failsight import _guard, _redact
from failsight._redact import mask_secrets, remember_secret

ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"

KEY = "sk-proj-abcdefghijklmnop1234"
AZURE_HEX = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_remembered_keys() -> Iterator[None]:
    """Each test starts with nothing remembered; the session's keys are restored after."""
    saved = _redact._remembered
    _redact._forget_secrets()
    yield
    _redact._remembered = saved


# --------------------------------------------------------------------------- patterns


# One table for both packages, the vocabulary's `secrets.cases` (read from the file, as Node reads
# it): js/test/redact.test.mjs runs the same cases through Node's masking.
VOCABULARY_FILE = Path(__file__).parents[1] / "src" / "failsight" / "vocabulary.json"
SECRETS = json.loads(VOCABULARY_FILE.read_text("utf-8"))["secrets"]


@pytest.mark.parametrize("case", SECRETS["cases"], ids=[case["id"] for case in SECRETS["cases"]])
def test_shared_secret_cases(case: dict[str, Any]) -> None:
    for key in case.get("remember", ()):
        remember_secret(key)
    assert mask_secrets(case["text"], case.get("limit", 1024)) == case["masked"]


def test_shared_secret_cases_cover_every_rule() -> None:
    """Each rule of the vocabulary masks something in a case of the table: a new rule needs one."""
    masking: set[str] = set()
    for case in SECRETS["cases"]:
        if case["text"] != case["masked"] and not case.get("remember"):
            masking |= _redact.rule_ids_matching(case["text"])
    uncovered = [rule["id"] for rule in SECRETS["rules"] if rule["id"] not in masking]
    assert not uncovered, (
        f"secret rules no case of vocabulary.json secrets.cases masks: {uncovered}"
    )


def test_rule_ids_matching_names_the_rules_that_mask() -> None:
    """The coverage above can fail: a text a rule masks names it, a text nothing masks none."""
    assert _redact.rule_ids_matching("Authorization: Bearer abc.DEF-ghi_123") == {"bearer"}
    assert "aws_access_key_id" in _redact.rule_ids_matching("aws AKIAIOSFODNN7EXAMPLE")
    assert _redact.rule_ids_matching("nothing secret here, Bearer abc") == frozenset()


def test_no_trigger_returns_the_text_itself() -> None:
    text = "The server had an error while processing your request. Sorry about that!"
    assert mask_secrets(text) is text


# --------------------------------------------------------------------------- exact keys


def test_remembered_key_masked_anywhere() -> None:
    key = "myAzureKeyWithNoShape42"  # no pattern matches it
    assert mask_secrets(f"failed: {key}!") == f"failed: {key}!"
    remember_secret(key)
    assert mask_secrets(f"failed: {key}!") == "failed: ***!"
    assert mask_secrets(f"{key}{key}") == "***"  # touching masks merge
    assert mask_secrets(f"headers: {{'api-key': b'{key}'}}") == "headers: {'api-key': b'***'}"


def test_remembered_key_in_repr_url_and_json_forms() -> None:
    key = "k3y/with+special'é"
    remember_secret(key)
    forms = [
        repr(key.encode())[2:-1],  # b'k3y/with+special\'\xc3\xa9'
        repr(key)[1:-1],
        json.dumps(key)[1:-1],
        quote(key, safe=""),
        quote(key),
    ]
    for form in forms:
        masked = mask_secrets(f"<{form}>")
        assert masked == "<***>", (form, masked)


def test_remembered_header_value_with_scheme() -> None:
    remember_secret("Bearer tok-abcdefgh-12")
    assert mask_secrets("token was tok-abcdefgh-12") == "token was ***"
    assert mask_secrets("Authorization: Bearer tok-abcdefgh-12") == "Authorization: ***"


def test_short_and_non_string_values_are_ignored() -> None:
    remember_secret("sk-test")  # 7 characters: too short to mask safely
    remember_secret("")
    remember_secret(None)  # type: ignore[arg-type]
    remember_secret(b"bytes-key-123")  # type: ignore[arg-type]
    assert _redact._remembered.keys == ()
    assert mask_secrets("sk-test and the rest") == "sk-test and the rest"


def test_remembered_keys_are_bounded_oldest_dropped() -> None:
    keys = [f"tenant-key-{i:04d}" for i in range(_redact._MAX_REMEMBERED + 10)]
    for key in keys:
        remember_secret(key)
    assert len(_redact._remembered.keys) == _redact._MAX_REMEMBERED
    assert mask_secrets(keys[0]) == keys[0]  # dropped
    assert mask_secrets(keys[-1]) == "***"
    # Seen again while still remembered: kept (a hot key is not pushed out by newer ones).
    hot = keys[10]
    remember_secret(hot)
    for i in range(_redact._MAX_REMEMBERED - 1):
        remember_secret(f"later-key-{i:04d}")
    assert mask_secrets(hot) == "***"


def test_forgetting_one_key_keeps_the_others() -> None:
    remember_secret("first-key-123456")
    remember_secret("second-key-123456")
    _redact._forget_secrets("first-key-123456")
    assert mask_secrets("first-key-123456 second-key-123456") == "first-key-123456 ***"
    _redact._forget_secrets()
    assert _redact._remembered == ((), (), 0)


def test_remembering_a_known_recent_key_is_lock_free(monkeypatch: pytest.MonkeyPatch) -> None:
    remember_secret("a-known-key-123")
    state = _redact._remembered

    class NoLock:
        def __enter__(self) -> None:
            raise AssertionError("took the lock for a known key")

        def __exit__(self, *args: object) -> None:
            pass

    monkeypatch.setattr(_redact, "_remember_lock", NoLock())
    remember_secret("a-known-key-123")
    assert _redact._remembered is state


def test_remembered_key_masked_before_truncation() -> None:
    key = "opaque" + "Q" * 600  # longer than the look-ahead past the limit
    remember_secret(key)
    for start in (0, 50, 95, 99, 100, 101, 150):
        text = "x" * start + key + " tail"
        masked = mask_secrets(text, 100)
        assert "QQQQ" not in masked and "opaq" not in masked, (start, masked)
        assert len(masked) <= 101


def test_remembered_key_cannot_be_rebuilt_by_masking() -> None:
    key = "sk-*** tail-key"  # the mask itself inside a key
    remember_secret(key)
    assert mask_secrets("sk-abcdefgh tail-key") == "***"  # the sk- pattern rebuilt it


def test_concurrent_remember_and_mask() -> None:
    errors: list[BaseException] = []
    stop = threading.Event()
    keys = [f"concurrent-key-{i:03d}" for i in range(200)]

    def writer() -> None:
        for key in keys:
            remember_secret(key)
        stop.set()

    def reader() -> None:
        try:
            while not stop.is_set():
                text = " ".join(keys[-3:])
                masked = mask_secrets(text)
                assert set(masked.split(" ")) <= {*keys, "***"}  # never half-masked
            assert mask_secrets(keys[-1]) == "***"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(_redact._remembered.keys) == _redact._MAX_REMEMBERED


# --------------------------------------------------------------------------- properties

PROVIDER_SHAPES: dict[str, tuple[str, str, int]] = {
    # name: (prefix, alphabet, body length)
    "openai": ("sk-proj-", B64URL, 48),
    "anthropic": ("sk-ant-api03-", B64URL, 95),
    "openrouter": ("sk-or-v1-", HEX, 64),
    "groq": ("gsk_", ALNUM, 52),
    "huggingface": ("hf_", string.ascii_letters, 34),
    "github": ("ghp_", ALNUM, 36),
    "github_oauth": ("gho_", ALNUM, 36),
    "github_pat": ("github_pat_", ALNUM + "_", 82),
    "aws": ("AKIA", string.ascii_uppercase + "234567", 16),
    "aws_session": ("ASIA", string.ascii_uppercase + "234567", 16),
    "xai": ("xai-", ALNUM, 80),
    "perplexity": ("pplx-", ALNUM, 48),
    "replicate": ("r8_", ALNUM, 37),
    "google": ("AIza", B64URL, 35),
    "google_oauth": ("ya29.", B64URL, 120),
    "stripe": ("sk_live_", ALNUM, 24),
}

# Shapes without a prefix: masked by their context (a key word, a header, a URL parameter).
CONTEXTS = [
    "invalid api key {key}",
    "Access denied due to invalid subscription key '{key}'.",
    "{{'api-key': b'{key}'}}",
    "[(b'ocp-apim-subscription-key', b'{key}')]",
    "Ocp-Apim-Subscription-Key: {key}",
    "https://fn.azurewebsites.net/api/x?code={key}&clientId=default",
    "https://acct.blob.core.windows.net/c/blob?sv=2022-11-02&sig={key}",
    "GET /v1beta/models?key={key}",
]

# Glued or tricky neighbours: a repr escape, key prefixes, words, ids.
neighbours = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["\\x85", "sk-", "Bearer ", "key=", "id ", "\n", "'", "0", "Z", "_", "-"]),
)


@st.composite
def provider_keys(draw: st.DrawFn) -> tuple[str, str]:
    """(a key of one provider's shape, its random body)."""
    prefix, alphabet, length = PROVIDER_SHAPES[draw(st.sampled_from(sorted(PROVIDER_SHAPES)))]
    # A random tail makes the body unique: hypothesis also draws strings seen in the code.
    nonce = "".join(secrets.choice(alphabet) for _ in range(8))
    body = draw(st.text(alphabet, min_size=length - 8, max_size=length - 8)) + nonce
    return prefix + body, body


@st.composite
def shapeless_keys(draw: st.DrawFn) -> tuple[str, str]:
    """(text carrying an Azure-style key, the key): 32 or 64 hex, 84-char, or base62."""
    kind = draw(st.sampled_from(["hex32", "hex64", "azure84", "base62"]))
    if kind == "azure84":
        head = "".join(secrets.choice(ALNUM) for _ in range(52))
        tail = "".join(secrets.choice(ALNUM) for _ in range(26))
        key = head + "JQQJ9" + draw(st.sampled_from("9DH")) + tail
    else:
        alphabet, length = {"hex32": (HEX, 32), "hex64": (HEX, 64), "base62": (ALNUM, 40)}[kind]
        key = "".join(secrets.choice(alphabet) for _ in range(length))
    return draw(st.sampled_from(CONTEXTS)).format(key=key), key


@given(
    key=provider_keys(),
    before=neighbours,
    after=neighbours,
    limit=st.integers(min_value=0, max_value=300),
)
@settings(max_examples=400, deadline=None, database=None)
def test_provider_keys_never_survive(
    key: tuple[str, str], before: str, after: str, limit: int
) -> None:
    text, body = key
    assume(body not in before + after)
    masked = mask_secrets(before + text + after, limit)
    assert body not in masked
    assert text not in masked
    assert len(masked) <= limit + 1


@given(
    key=shapeless_keys(),
    before=neighbours,
    after=neighbours,
    limit=st.integers(min_value=0, max_value=300),
)
@settings(max_examples=300, deadline=None, database=None)
def test_shapeless_keys_in_context_never_survive(
    key: tuple[str, str], before: str, after: str, limit: int
) -> None:
    text, secret = key
    masked = mask_secrets(before + text + after, limit)
    assert secret not in masked
    assert secret[:16] not in masked  # not a prefix left by a cut either


@given(
    key=st.text(min_size=8, max_size=80),
    before=st.text(max_size=60),
    after=st.text(max_size=60),
    limit=st.integers(min_value=0, max_value=200),
    as_bytes=st.booleans(),
)
@settings(max_examples=400, deadline=None, database=None)
def test_remembered_keys_never_survive(
    key: str, before: str, after: str, limit: int, as_bytes: bool
) -> None:
    _redact._forget_secrets()
    remember_secret(key)
    form = key
    if as_bytes:  # the key inside a bytes repr, as in a raw header list
        try:
            form = repr(key.encode())[2:-1]
        except UnicodeEncodeError:
            assume(False)
    masked = mask_secrets(before + form + after, limit)
    assert key not in masked
    assert form not in masked
    assert len(masked) <= limit + 1


def _gated_triggers(text: str) -> set[str]:
    lowered = text.lower()
    return {
        trigger
        for gate, cased, triggers in _redact._GATES
        for trigger in triggers
        if gate in (text if cased else lowered) and trigger in (text if cased else lowered)
    }


def test_fast_path_knows_every_trigger() -> None:
    """The unrolled fast path agrees with the rules' own triggers."""
    for rule_triggers, *_ in _redact._RULES:
        for trigger in rule_triggers:
            for text in (trigger, f"x {trigger} y", f"X{trigger.upper()}Y"):
                assert _redact._any_trigger(text, text.lower()) == bool(_gated_triggers(text))
                assert _redact._triggers(text) == (_gated_triggers(text) or None)


@given(key=st.one_of(provider_keys(), shapeless_keys()), before=neighbours)
@settings(max_examples=300, deadline=None, database=None)
def test_every_match_carries_a_trigger(key: tuple[str, str], before: str) -> None:
    """A rule whose trigger is missing from a text it matches would never run on it."""
    text = before + key[0]
    for triggers, pattern, *_ in _redact._RULES:
        if pattern.search(text):
            assert not triggers.isdisjoint(_gated_triggers(text)), (pattern.pattern, text)


TRIGGER_CHARS = sorted(
    {c for _, _, triggers in _redact._GATES for t in triggers for c in t} | {" "}
)


@given(st.text(alphabet=st.sampled_from(TRIGGER_CHARS)))
@settings(max_examples=300, deadline=None, database=None)
def test_fast_path_agrees_with_the_gates(text: str) -> None:
    assert _redact._any_trigger(text, text.lower()) == bool(_gated_triggers(text))


@given(
    text=st.text(
        alphabet=st.sampled_from([*TRIGGER_CHARS, *"0123456789abcdef'\":(,)?&"]), max_size=300
    )
    | st.text(max_size=300),
    limit=st.integers(min_value=0, max_value=400),
)
@settings(max_examples=300, deadline=None, database=None)
def test_masking_never_lengthens(text: str, limit: int) -> None:
    masked = mask_secrets(text, limit)
    assert len(masked) <= min(len(text), limit + 1)
    assert masked == text or "***" in masked or masked.endswith("…")


# --------------------------------------------------------------------------- failsight's own log


def _callers_error() -> Exception:
    """A telemetry error raised while handling the caller's exception (chained to it)."""
    try:
        try:
            raise PermissionError(f"Incorrect API key provided: {KEY}")
        except PermissionError:
            # Implicit chaining is the point: the caller's exception is the context.
            raise KeyError(f"no span for api-key {AZURE_HEX}")  # noqa: B904
    except KeyError as exc:
        return exc


@pytest.fixture
def fresh_log(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Any:
    monkeypatch.delenv(_guard.RAISE_INTERNAL_ERRORS_ENV, raising=False)
    monkeypatch.setattr(_guard, "_last_logged", {})
    caplog.set_level(logging.DEBUG, logger="failsight")
    return caplog


def _failsight_text(caplog: pytest.LogCaptureFixture) -> str:
    texts = []
    for record in caplog.records:
        if record.name.split(".")[0] != "failsight":
            continue
        assert record.exc_info is None and record.exc_text is None and record.stack_info is None
        texts.append(record.getMessage())
        texts.append(caplog.handler.format(record))
    return "\n".join(texts)


def test_log_never_contains_the_callers_key(fresh_log: pytest.LogCaptureFixture) -> None:
    exc = _callers_error()
    assert isinstance(exc.__context__, PermissionError)  # the chain carries the key
    _guard.report("call_record", exc)
    logged = _failsight_text(fresh_log)
    levels = {record.levelno for record in fresh_log.records}
    assert levels == {logging.WARNING, logging.DEBUG}
    assert "call_record" in logged
    assert "Traceback" in logged and "PermissionError" in logged  # the chain was logged
    assert "sk-***" in logged
    assert KEY not in logged and KEY[8:] not in logged
    assert AZURE_HEX not in logged


def test_log_masks_a_remembered_key_in_the_chain(fresh_log: pytest.LogCaptureFixture) -> None:
    remember_secret("plainAzureKey-no-shape")
    try:
        try:
            raise ValueError("bad credentials plainAzureKey-no-shape")
        except ValueError:
            raise RuntimeError("span exporter broke") from None
    except RuntimeError as exc:
        exc.__cause__ = ValueError("retried with plainAzureKey-no-shape")
        _guard.report("span", exc)
    logged = _failsight_text(fresh_log)
    assert "retried with ***" in logged
    assert "plainAzureKey" not in logged


def test_log_at_most_once_per_stage_per_interval(fresh_log: pytest.LogCaptureFixture) -> None:
    for _ in range(5):
        _guard.report("call_record", RuntimeError("again"))
    _guard.report("http", RuntimeError("another stage"))
    warnings = [r for r in fresh_log.records if r.levelno == logging.WARNING]
    assert [r.args[0] for r in warnings] == ["call_record", "http"]  # type: ignore[index]
    _guard._last_logged["call_record"] -= _guard._LOG_INTERVAL + 1  # the interval passed
    _guard.report("call_record", RuntimeError("later"))
    warnings = [r for r in fresh_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3


def test_log_survives_an_unprintable_exception(fresh_log: pytest.LogCaptureFixture) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError(f"cannot print {KEY}")

    _guard.report("attempt", Unprintable())
    logged = _failsight_text(fresh_log)
    assert "Unprintable" in logged
    assert KEY not in logged
