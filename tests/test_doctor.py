"""`failsight doctor` against the fault server: each scenario gets the right verdict and a
finding that names the cause; keys never reach the output."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest

from failsight import cli, doctor
from failsight.doctor._media import VideoRun, judge_video_job
from failsight.doctor._probe import Reply
from failsight.testing import SCENARIO_HEADER, FaultServer

KEY = "sk-test-doctor-abcdefghijklmnop1234"


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer(video_polls_to_finish=2, retry_after_seconds=7) as running:
        yield running


def run(
    server: FaultServer,
    *,
    scenarios: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, doctor.Check]:
    options: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": KEY,
        "image_model": "dall-e-3",
        "video_model": "sora-2",
        "video_wait_s": 5.0,
        "video_interval_s": 0.01,
        "headers": {probe: {SCENARIO_HEADER: name} for probe, name in (scenarios or {}).items()},
    }
    options.update(overrides)
    checks = doctor.run_checks(doctor.DoctorConfig(**options))
    return {check.id: check for check in checks}


def test_a_healthy_endpoint_is_all_ok_but_shows_an_unenforced_max_tokens(
    server: FaultServer,
) -> None:
    checks = run(server)
    assert {c.id: c.verdict for c in checks.values() if c.verdict != "ok"} == {
        "text.truncation": "warn",  # the fault server ignores max_tokens
        "text.validation": "skip",  # not asked for
    }
    assert "max_tokens=1 was ignored" in checks["text.truncation"].finding
    assert checks["text.chat"].details["finish_reason"] == "stop"
    assert doctor.exit_status(checks.values()) == 1


def test_no_key_sends_nothing(server: FaultServer) -> None:
    server.reset()
    checks = run(server, api_key=None)
    assert checks["key.shape"].verdict == "fail"
    assert "OPENAI_API_KEY is not set" in checks["key.shape"].finding
    assert server.requests == []
    assert doctor.exit_status(checks.values()) == 2


def test_a_key_with_a_pasted_newline_fails_with_the_fix(server: FaultServer) -> None:
    checks = run(server, api_key=KEY + "\n")
    key = checks["key.shape"]
    assert key.verdict == "fail"
    assert "newline at its end" in key.finding
    assert "tr -d" in key.fix
    assert checks["text.chat"].verdict == "ok"  # the rest ran with the key stripped
    inside = run(server, api_key=KEY[:10] + "\n" + KEY[10:], only=("text",))["key.shape"]
    assert "newline inside it" in inside.finding


@pytest.mark.parametrize(
    ("raw", "cause"),
    [
        (f'"{KEY}"', "quotes"),
        (f" {KEY}", "whitespace"),
        (f"Bearer {KEY}", "Bearer"),
        ("sk-short", "only 8 characters"),
    ],
)
def test_key_shapes(server: FaultServer, raw: str, cause: str) -> None:
    check = run(server, api_key=raw, only=("text",))["key.shape"]
    assert check.verdict in ("fail", "warn")
    assert cause in check.finding


def test_a_401_fails_naming_the_key(server: FaultServer) -> None:
    checks = run(server, scenarios={"models": "http_401", "chat": "http_401"}, only=("text",))
    accepted = checks["key.accepted"]
    assert accepted.verdict == "fail"
    assert "the key in OPENAI_API_KEY, sent as Bearer, was refused" in accepted.finding
    assert "invalid_api_key" in accepted.finding
    assert checks["text.chat"].verdict == "fail"
    assert "401" in checks["text.chat"].finding


def test_a_base_url_without_v1_fails_with_the_fix(server: FaultServer) -> None:
    checks = run(server, base_url=server.url)
    base = checks["text.base_url"]
    assert base.verdict == "fail"
    assert "lacks /v1" in base.finding
    assert f"{server.url}/v1" in base.fix
    assert checks["key.accepted"].verdict == "skip"  # a 404 route says nothing of the key
    assert checks["image.generate"].finding == "not run: see text.base_url"
    assert checks["video.job"].finding == "not run: see text.base_url"


@pytest.mark.e2e
def test_a_refused_connection_fails_and_sends_nothing_else() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    checks = doctor.run_checks(
        doctor.DoctorConfig(
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key=KEY,
            image_model="dall-e-3",
            video_model="sora-2",
        )
    )
    by_id = {c.id: c for c in checks}
    assert by_id["text.base_url"].verdict == "fail"
    assert "cannot connect" in by_id["text.base_url"].finding
    assert by_id["key.accepted"].verdict == "skip"
    assert by_id["image.generate"].verdict == "skip"
    assert by_id["video.job"].verdict == "skip"


def test_a_model_not_listed_warns_naming_it(server: FaultServer) -> None:
    check = run(server, model="gpt-9-turbo", only=("text",))["text.models"]
    assert check.verdict == "warn"
    assert "gpt-9-turbo is not among the 5 models listed" in check.finding


def test_content_filter_fails(server: FaultServer) -> None:
    check = run(server, scenarios={"chat": "content_filter"}, only=("text",))["text.chat"]
    assert check.verdict == "fail"
    assert "content_filter" in check.finding


def test_null_content_with_tool_calls_is_explained(server: FaultServer) -> None:
    check = run(server, scenarios={"chat": "tool_calls"}, only=("text",))["text.chat"]
    assert check.verdict == "warn"
    assert "content is null because finish_reason=tool_calls" in check.finding
    assert check.details["content_null"] is True


def test_empty_content_with_stop_fails(server: FaultServer) -> None:
    check = run(server, scenarios={"chat": "empty_content"}, only=("text",))["text.chat"]
    assert check.verdict == "fail"
    assert "no output" in check.finding


def test_length_on_the_tiny_call_shows_what_truncation_looks_like(server: FaultServer) -> None:
    check = run(server, scenarios={"chat_tiny": "length"}, only=("text",))["text.truncation"]
    assert check.verdict == "ok"
    assert "finish_reason=length" in check.finding
    assert "completion tokens" in check.finding
    assert "soft/length" in check.fix


def test_a_429_with_retry_after_is_read_for_the_retry_policy(server: FaultServer) -> None:
    checks = run(server, scenarios={"chat": "http_429_retry_after"}, only=("text",))
    limits = checks["text.rate_limits"]
    assert limits.verdict == "warn"
    assert "retry-after 7 s" in limits.finding
    chat = checks["text.chat"]
    assert chat.verdict == "fail"
    assert "(retry)" in chat.finding
    assert "Retry-After" in chat.fix


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_says_retry(server: FaultServer, status: int) -> None:
    check = run(server, scenarios={"chat": f"http_{status}"}, only=("text",))["text.chat"]
    assert check.verdict == "fail"
    assert "retry with exponential backoff" in check.fix


def test_a_400_says_fix_the_request(server: FaultServer) -> None:
    check = run(server, scenarios={"chat": "http_400"}, only=("text",))["text.chat"]
    assert "(fix the request)" in check.finding
    assert "retrying will not help" in check.fix


def test_rate_limit_headers_are_read() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body: dict[str, Any] = {"object": "list", "data": [{"id": "gpt-4o-mini"}]}
        if request.url.path.endswith("/chat/completions"):
            body = {
                "choices": [
                    {"finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
                ],
                "usage": {"completion_tokens": 1},
            }
        headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-limit-requests": "60"}
        return httpx.Response(200, json=body, headers=headers)

    config = doctor.DoctorConfig(
        base_url="https://gateway.example/v1",
        api_key=KEY,
        only=("text",),
        transport=httpx.MockTransport(answer),
    )
    check = {c.id: c for c in doctor.run_checks(config)}["text.rate_limits"]
    assert check.verdict == "warn"
    assert "remaining-requests=0" in check.finding


def test_an_empty_image_data_fails_with_the_fix(server: FaultServer) -> None:
    check = run(server, scenarios={"image": "image_empty"}, only=("image",))["image.generate"]
    assert check.verdict == "fail"
    assert "`data` is empty" in check.finding
    assert "before data[0]" in check.fix


def test_image_forms(server: FaultServer) -> None:
    b64 = run(server, scenarios={"image": "image_b64"}, only=("image",))["image.generate"]
    assert b64.verdict == "ok"
    assert b64.details["form"] == "b64_json"
    url = run(server, scenarios={"image": "image_revised_prompt"}, only=("image",))
    assert "revised_prompt present" in url["image.generate"].finding
    assert "expire" in url["image.generate"].fix


def test_image_model_pitfalls() -> None:
    from failsight.doctor._media import judge_image_params

    assert "output_format" in judge_image_params("gpt-image-1").finding
    assert "n must be 1" in judge_image_params("dall-e-3").finding


def test_a_video_stuck_in_queued_fails(server: FaultServer) -> None:
    checks = run(
        server, scenarios={"video_create": "video_stuck"}, only=("video",), video_wait_s=0.2
    )
    job = checks["video.job"]
    assert job.verdict == "fail"
    assert "stuck in 'queued'" in job.finding
    assert job.details["statuses"] == ["queued"]


def test_a_failed_video_without_error_says_so(server: FaultServer) -> None:
    job = run(server, scenarios={"video_create": "video_failed"}, only=("video",))["video.job"]
    assert job.verdict == "fail"
    assert "carries no `error`" in job.finding


def test_a_failed_video_with_error_shows_it() -> None:
    create = Reply("POST", "http://x/v1/videos", 200, body={"id": "v1", "status": "queued"})
    body = {"id": "v1", "status": "failed", "error": {"message": "moderation_blocked"}}
    job = judge_video_job(VideoRun(create, statuses=["queued", "failed"], last_body=body))
    assert job.verdict == "fail"
    assert "moderation_blocked" in job.finding


@pytest.mark.parametrize("status", ["succeed", "succeeded"])
def test_both_success_spellings_are_accepted(server: FaultServer, status: str) -> None:
    checks = run(server, scenarios={"video_create": f"video_{status}"}, only=("video",))
    assert checks["video.job"].verdict == "ok"
    spelled = checks["video.statuses"]
    assert spelled.verdict == "ok"
    assert f"success is spelled '{status}'" in spelled.finding


def test_a_first_poll_task_not_exist_is_flagged(server: FaultServer) -> None:
    checks = run(server, scenarios={"video_create": "video_task_not_exist"}, only=("video",))
    assert checks["video.job"].verdict == "ok"
    assert checks["video.statuses"].verdict == "warn"
    assert "task_not_exist" in checks["video.statuses"].finding


def test_the_key_is_masked_in_text_and_json(server: FaultServer) -> None:
    doctor.protect(KEY)
    checks = list(run(server, api_key=KEY + "\n").values())
    text = doctor.render_text(checks, server.base_url)
    document = doctor.render_json(checks, server.base_url)
    assert KEY not in text
    assert KEY not in document
    assert "abcdefghijklmnop" not in text + document


def test_the_json_document_follows_its_schema(server: FaultServer) -> None:
    checks = list(run(server, scenarios={"image": "image_empty"}).values())
    document = json.loads(doctor.render_json(checks, server.base_url))
    assert document["schema"] == doctor.SCHEMA
    assert set(document) == {
        "schema", "base_url", "deadline_s", "exit_status", "summary", "checks", "classes", "series"
    }  # fmt: skip
    assert document["exit_status"] == 2
    assert set(document["summary"]) == {"ok", "warn", "fail", "skip"}
    assert sum(document["summary"].values()) == len(document["checks"])
    for check in document["checks"]:
        assert set(check) == {"id", "group", "verdict", "finding", "fix", "details"}
        assert check["group"] in ("key", "text", "image", "video")
        assert check["verdict"] in ("ok", "warn", "fail", "skip")
        assert "\n" not in check["finding"]


@pytest.mark.e2e
def test_cli_against_the_fault_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--against-fault-server"]) == 0
    out = capsys.readouterr().out
    assert "finish_reason=length" in out
    assert "exit status 0" in out
    assert cli.main(["doctor", "--against-fault-server", "--json", "--only", "text"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {c["group"] for c in document["checks"]} == {"key", "text"}


def test_cli_without_a_key_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MY_GATEWAY_KEY", raising=False)
    status = cli.main(
        ["doctor", "--api-key-env", "MY_GATEWAY_KEY", "--base-url", "http://127.0.0.1:9/v1"]
    )
    assert status == 2
    assert "MY_GATEWAY_KEY is not set" in capsys.readouterr().out


def test_cli_asks_before_spending(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert cli.main(["doctor", "--base-url", "http://127.0.0.1:9/v1"]) == 2
    err = capsys.readouterr().err
    assert "2 chat calls" in err
    assert "pass --yes" in err
    assert KEY not in err


def test_cli_rejects_an_unknown_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--only", "audio", "--yes"]) == 2
    assert "unknown group" in capsys.readouterr().err


def test_the_requests_are_counted_in_failsights_own_taxonomy(server: FaultServer) -> None:
    config = doctor.DoctorConfig(
        base_url=server.base_url,
        api_key=KEY,
        image_model="dall-e-3",
        headers={
            "chat": {SCENARIO_HEADER: "content_filter"},
            "image": {SCENARIO_HEADER: "image_empty"},
        },
        only=("text", "image"),
    )
    report = doctor.run_doctor(config)
    # The chat call, the tiny call, the image (GET /models is no AI route: not recorded)
    assert report.classes == {"none": 1, "soft/content_filter": 1, "soft/image_filtered": 1}
    document = json.loads(doctor.render_json(report.checks, server.base_url, report.classes))
    assert document["classes"] == report.classes
    text = doctor.render_text(report.checks, server.base_url, report.classes)
    assert text.endswith(
        "3 requests as failsight classifies them: none 1, "
        "soft/content_filter 1, soft/image_filtered 1"
    )


def test_a_401_is_counted_as_hard_unauthorized(server: FaultServer) -> None:
    config = doctor.DoctorConfig(
        base_url=server.base_url,
        api_key=KEY,
        headers={"models": {SCENARIO_HEADER: "http_401"}, "chat": {SCENARIO_HEADER: "http_401"}},
        only=("text",),
    )
    assert doctor.run_doctor(config).classes == {"hard/unauthorized": 1}  # the chat call


def test_the_requests_go_through_failsights_instrumentation(server: FaultServer) -> None:
    """The series come from `instrument_http`'s recording of the doctor's own requests, into
    a registry of the doctor's; what was configured before is in force again afterwards."""
    from prometheus_client import CollectorRegistry

    import failsight
    from failsight import _config
    from failsight._http_patch import is_http_instrumented

    mine = CollectorRegistry()
    failsight.configure(registry=mine, max_label_values=7)
    config = doctor.DoctorConfig(
        base_url=server.base_url,
        api_key=KEY,
        image_model="dall-e-3",
        headers={"chat": {SCENARIO_HEADER: "length"}, "image": {SCENARIO_HEADER: "image_empty"}},
        only=("text", "image"),
    )
    report = doctor.run_doctor(config)
    got = {
        (row["name"], row["labels"].get("operation"), row["labels"].get("failure_class"),
         row["labels"].get("reason")): row["value"]
        for row in report.series
    }  # fmt: skip
    assert got[("genai_requests_total", "chat", "soft", None)] == 1
    assert got[("genai_requests_total", "chat", "none", None)] == 1  # the tiny call
    assert got[("genai_failures_total", "chat", "soft", "length")] == 1
    assert got[("genai_failures_total", "image_generation", "soft", "image_filtered")] == 1
    assert all(row["labels"]["call_site"] == "unscoped" for row in report.series)
    # Put back: the user's registry and caps, nothing recorded there, the patch off again.
    assert _config.get_state().settings.registry is mine
    assert _config.get_state().settings.max_label_values == 7
    assert mine.get_sample_value("genai_requests_total", {}) is None
    assert not any(s.value for m in mine.collect() for s in m.samples if "requests" in s.name)
    assert not is_http_instrumented()
    text = doctor.render_text(report.checks, server.base_url, report.classes, report.series)
    assert "What failsight recorded of these requests" in text
    assert 'genai_failures_total{operation="chat"' in text
    document = json.loads(
        doctor.render_json(report.checks, server.base_url, report.classes, report.series)
    )
    assert document["series"] == report.series
    for row in document["series"]:
        assert set(row) == {"name", "labels", "value"}


def test_an_inner_newline_is_named_and_what_ran_is_said(server: FaultServer) -> None:
    raw = KEY[:10] + "\n" + KEY[10:]
    check = run(server, api_key=raw, only=("text",))["key.shape"]
    assert check.verdict == "fail"
    assert "newline inside it" in check.finding
    assert "stripped" not in check.finding
    assert "the newline removed" in check.finding


# ---------------------------------------------------------------------- validate, tokens, header


@pytest.mark.parametrize(
    ("spec", "scenario", "verdict", "reason"),
    [
        ("json", "echo", "ok", None),  # the server echoes the prompt: a JSON prompt passes
        ("json", "ok", "fail", "invalid_json"),
        ("nonempty", "ok", "ok", None),
        ("oneof:yes,no", "ok", "fail", "unexpected_label"),
        ("minwords:50", "ok", "fail", "too_short"),
    ],
)
def test_validate_checks_the_apps_own_rule(
    server: FaultServer, spec: str, scenario: str, verdict: str, reason: str | None
) -> None:
    report = doctor.run_doctor(
        doctor.DoctorConfig(
            base_url=server.base_url,
            api_key=KEY,
            only=("text",),
            validate=spec,
            prompt='{"answer": 42}',
            headers={"chat_validate": {SCENARIO_HEADER: scenario}},
        )
    )
    check = {c.id: c for c in report.checks}["text.validation"]
    assert check.verdict == verdict, check
    site = [r for r in report.series if r["labels"]["call_site"] == "failsight_doctor_validate"]
    requests = {r["labels"]["failure_class"]: r["value"] for r in site
                if r["name"] == "genai_requests_total"}  # fmt: skip
    if reason is None:
        assert requests == {"none": 1}
    else:
        assert f"silent/{reason}" in check.finding and spec in check.finding
        assert requests == {"silent": 1}  # counted as an application would count it


def test_without_validate_the_check_says_how() -> None:
    check = doctor._checked.judge_validation(None, None)
    assert check.verdict == "skip" and "--validate" in check.finding


@pytest.mark.e2e
@pytest.mark.parametrize("spec", ["xml", "oneof:", "minwords:0", "minwords:x", "json:1"])
def test_a_bad_validate_is_refused_before_anything_is_sent(
    spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["doctor", "--against-fault-server", "--validate", spec]) == 2
    assert "use nonempty, json, oneof:A,B,... or minwords:N" in capsys.readouterr().err


@pytest.mark.e2e
def test_prompt_without_validate_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--against-fault-server", "--prompt", "hi"]) == 2
    assert "--prompt goes with --validate" in capsys.readouterr().err


def _gateway(seen: list[httpx.Request], *, refuse_max_tokens: bool) -> httpx.MockTransport:
    """A model that takes only `max_completion_tokens` (as the o-series and gpt-5 do)."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": "o4-mini"}]})
        body = json.loads(request.content)
        if refuse_max_tokens and "max_tokens" in body:
            return httpx.Response(400, json={"error": {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this "
                "model. Use 'max_completion_tokens' instead.",
                "type": "invalid_request_error", "param": "max_tokens",
                "code": "unsupported_parameter"}})  # fmt: skip
        return httpx.Response(200, json={
            "id": "c", "object": "chat.completion", "created": 0, "model": "o4-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})  # fmt: skip

    return httpx.MockTransport(answer)


def test_a_refused_max_tokens_is_retried_with_max_completion_tokens() -> None:
    seen: list[httpx.Request] = []
    report = doctor.run_doctor(
        doctor.DoctorConfig(
            base_url="https://gw.example/v1",
            api_key=KEY,
            model="o4-mini",
            only=("text",),
            transport=_gateway(seen, refuse_max_tokens=True),
        )
    )
    checks = {c.id: c for c in report.checks}
    assert checks["text.max_tokens"].verdict == "warn"
    assert (
        "max_tokens refused (HTTP 400 unsupported_parameter)" in checks["text.max_tokens"].finding
    )
    assert "max_completion_tokens" in checks["text.max_tokens"].fix
    assert checks["text.chat"].verdict == "ok"  # the re-sent call answered
    fields = [sorted(set(json.loads(r.content)) & {"max_tokens", "max_completion_tokens"})
              for r in seen if r.method == "POST"]  # fmt: skip
    assert fields == [["max_tokens"], ["max_completion_tokens"], ["max_completion_tokens"]]
    assert report.classes.get("hard/bad_request") == 1  # the refusal, as failsight counts it


def test_max_tokens_accepted_is_ok() -> None:
    report = doctor.run_doctor(
        doctor.DoctorConfig(
            base_url="https://gw.example/v1",
            api_key=KEY,
            model="o4-mini",
            only=("text",),
            transport=_gateway([], refuse_max_tokens=False),
        )
    )
    assert {c.id: c for c in report.checks}["text.max_tokens"].verdict == "ok"


@pytest.mark.parametrize(
    ("base_url", "chosen", "sent"),
    [
        ("https://my-res.openai.azure.com/openai/v1", None, "api-key"),
        ("https://gw.example/v1", None, "authorization"),
        ("https://gw.example/v1", "x-api-key", "x-api-key"),
    ],
)
def test_the_key_goes_in_the_header_the_host_expects(
    base_url: str, chosen: str | None, sent: str
) -> None:
    seen: list[httpx.Request] = []
    report = doctor.run_doctor(
        doctor.DoctorConfig(
            base_url=base_url,
            api_key=KEY,
            model="o4-mini",
            only=("text",),
            api_key_header=chosen,
            transport=_gateway(seen, refuse_max_tokens=False),
        )
    )
    for request in seen:
        value = request.headers.get(sent)
        assert value == (f"Bearer {KEY}" if sent == "authorization" else KEY)
        if sent != "authorization":
            assert "authorization" not in request.headers
    shape = {c.id: c for c in report.checks}["key.shape"]
    assert ("Bearer" if sent == "authorization" else f"the {sent} header") in shape.finding


NOW = 1_790_000_000.0  # a fixed clock: 2026-09-21 14:13:20 UTC


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("se=2026-09-21T15:13:20Z&sp=r&sig=x", "at 2026-09-21 15:13 UTC, in 60 min"),  # Azure SAS
        ("X-Amz-Date=20260921T141320Z&X-Amz-Expires=600&X-Amz-Signature=x", "in 10 min"),
        ("X-Goog-Date=20260921T141320Z&X-Goog-Expires=1800", "in 30 min"),
        (f"Expires={int(NOW) + 120}&Signature=x", "in 2 min"),  # CloudFront
        ("se=2026-09-21T13:00:00Z", "already passed"),
        ("", None),
        ("se=not-a-time", None),
        ("Expires=nan", None),  # what a server may sign: never a crash
        ("Expires=inf", None),
        ("Expires=1e300", None),
        ("X-Amz-Date=20260921T141320Z&X-Amz-Expires=99999999999999999999", None),
    ],
)
def test_image_url_expiry_is_read_from_the_signature(query: str, said: str | None) -> None:
    found = doctor._media.url_expiry(f"https://files.example/img.png?{query}", now=NOW)
    if said is None:
        assert found is None
    else:
        assert found is not None and said in found


def test_the_image_check_says_when_the_url_expires(server: FaultServer) -> None:
    check = run(server, only=("image",))["image.generate"]
    assert check.verdict == "ok"
    assert re.search(r"1 image as a URL \(expires at .* UTC, in (59|60) min\)", check.finding)
    assert "download the image at once" in check.fix


# ---------------------------------------------------------------------- one verdict, every problem


def test_the_classes_line_and_the_series_give_each_request_one_verdict(
    server: FaultServer,
) -> None:
    """The --validate call that fails is `silent` in both, not `none` in one of them."""
    report = doctor.run_doctor(
        doctor.DoctorConfig(
            base_url=server.base_url,
            api_key=KEY,
            only=("text",),
            validate="json",
            headers={"chat_tiny": {SCENARIO_HEADER: "length"}},
        )
    )
    assert report.classes == {"none": 1, "silent/invalid_json": 1, "soft/length": 1}
    recorded = {
        row["labels"]["failure_class"]: row["value"]
        for row in report.series
        if row["name"] == "genai_requests_total"
    }
    assert recorded == {"none": 1, "silent": 1, "soft": 1}
    text = doctor.render_text(report.checks, server.base_url, report.classes, report.series)
    assert (
        "3 requests as failsight classifies them: none 1, silent/invalid_json 1, soft/length 1"
        in text
    )


def test_the_doctors_own_advice_is_never_masked() -> None:
    report = doctor.run_doctor(doctor.DoctorConfig("http://127.0.0.1:9/v1", None))
    text = doctor.render_text(report.checks, "http://127.0.0.1:9/v1", report.classes)
    assert "fix: export OPENAI_API_KEY=<your key> (or --api-key-env NAME" in text
    assert "skip  key.accepted     no key: nothing was sent" in text
    document = json.loads(doctor.render_json(report.checks, "http://127.0.0.1:9/v1"))
    assert document["checks"][0]["fix"].startswith("export OPENAI_API_KEY=<your key> ")


def test_every_key_shape_problem_is_reported(server: FaultServer) -> None:
    checks = run(server, api_key=f'"Bearer {KEY}"\n', only=("text",))
    shape = checks["key.shape"]
    assert shape.verdict == "fail"
    assert len(shape.details["problems"]) == 3
    for said in ("a newline at its end", "quotes around it", "a leading 'Bearer '"):
        assert said in shape.finding
    assert "the newline, the quotes and 'Bearer ' removed" in shape.finding
    for fix in ("tr -d", "drop the quotes", "keep only the key"):
        assert fix in shape.fix
    assert checks["text.chat"].verdict == "ok"  # sent with all three peeled off
    inner = run(server, api_key=KEY[:10] + "\t" + KEY[10:], only=("text",))["key.shape"]
    assert inner.verdict == "fail" and "a tab inside it" in inner.finding


def test_a_failed_validate_call_fails_the_check(server: FaultServer) -> None:
    """An answered chat call, then a 500 on the --validate call: a failure, not a skip."""
    checks = run(
        server, scenarios={"chat_validate": "http_500"}, only=("text",), validate="nonempty"
    )
    check = checks["text.validation"]
    assert check.verdict == "fail" and "HTTP 500" in check.finding
    assert doctor.exit_status(checks.values()) == 2


# ---------------------------------------------------------------------- durations and exit status


@pytest.mark.parametrize("field", ["video_wait_s", "video_interval_s", "timeout_s", "deadline_s"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_duration_that_never_ends_is_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{field} must be a finite number of seconds above 0"):
        doctor.DoctorConfig("http://127.0.0.1:9/v1", KEY, **{field: value})


@pytest.mark.parametrize(
    ("hint", "pause"),
    [("0", 0.5), ("1", 0.5), ("900", 0.9), ("5000", 2.0), ("²", 2.0), (None, 2.0)],
)
def test_the_servers_poll_hint_is_floored(hint: str | None, pause: float) -> None:
    assert doctor._media._pause(hint, 2.0) == pause


def test_the_default_deadline_covers_the_video_wait() -> None:
    config = doctor.DoctorConfig("http://127.0.0.1:9/v1", KEY, video_model="sora-2")
    assert config.run_deadline_s == doctor.DEADLINE_S + config.video_wait_s
    assert doctor.DoctorConfig("http://x/v1", KEY).run_deadline_s == doctor.DEADLINE_S


def test_the_screen_states_the_deadline(server: FaultServer) -> None:
    report = doctor.run_doctor(
        doctor.DoctorConfig(server.base_url, KEY, only=("text",), deadline_s=45)
    )
    assert report.deadline_s == 45
    text = doctor.render_text(report.checks, server.base_url, deadline_s=report.deadline_s)
    assert text.startswith(f"failsight doctor: {server.base_url} (at most 45 s)\n")


@pytest.mark.e2e
def test_a_bug_in_the_doctor_is_exit_status_3_never_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit status 1 means "warnings only" to a deploy gate: a crash must not look like it."""

    def broken(config: doctor.DoctorConfig) -> doctor.Report:
        raise ValueError(f"server said {KEY}")

    monkeypatch.setattr(doctor, "run_doctor", broken)
    assert cli.main(["doctor", "--against-fault-server"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the doctor broke (ValueError in broken)" in err
    assert KEY not in err  # the message could hold what a server sent: not printed
    parser = cli.build_parser()
    helped = parser._subparsers._group_actions[0].choices["doctor"].format_help()  # type: ignore[union-attr]
    assert "3 the doctor itself broke" in " ".join(helped.split())


@pytest.mark.e2e
def test_credentials_in_the_base_url_are_not_printed() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://gateway-user:s3cretpw0rd@127.0.0.1:{port}/v1"
    report = doctor.run_doctor(doctor.DoctorConfig(base_url, KEY, only=("text",)))
    text = doctor.render_text(report.checks, base_url)
    document = doctor.render_json(report.checks, base_url)
    assert f"cannot connect to 127.0.0.1:{port}" in text
    assert text.startswith(f"failsight doctor: http://***@127.0.0.1:{port}/v1\n")
    assert "s3cretpw0rd" not in text + document and "gateway-user" not in text + document


def test_what_a_server_puts_in_usage_stays_a_few_lines_of_json() -> None:
    usage = {f"field_{n}": "x" * 1000 for n in range(5000)}
    usage["completion_tokens"] = ["y" * 100_000]  # type: ignore[assignment]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "gpt-4o-mini"}]})
        choice = {"finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
        return httpx.Response(200, json={"choices": [choice], "usage": usage})

    config = doctor.DoctorConfig(
        "https://gw.example/v1", KEY, only=("text",), transport=httpx.MockTransport(answer)
    )
    report = doctor.run_doctor(config)
    chat = {c.id: c for c in report.checks}["text.chat"]
    assert chat.verdict == "ok" and len(chat.finding) < 200
    assert len(doctor.render_json(report.checks, config.base_url)) < 200_000
    assert len(doctor.render_text(report.checks, config.base_url)) < 5_000


@pytest.mark.parametrize(
    "body", [b"<html><body>Sign in to the proxy</body></html>", b'["a list", "not an object"]']
)
def test_a_200_that_is_no_json_object_is_named_as_such(body: bytes) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "gpt-4o-mini"}]})
        return httpx.Response(200, content=body)

    config = doctor.DoctorConfig(
        "https://gw.example/v1", KEY, only=("text",), transport=httpx.MockTransport(answer)
    )
    chat = {c.id: c for c in doctor.run_doctor(config).checks}["text.chat"]
    assert chat.verdict == "fail"
    assert "answered HTTP 200 without a JSON object: " + body[:20].decode() in chat.finding
    assert "a web page or a proxy" in chat.fix
