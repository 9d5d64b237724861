"""The raw-HTTP patch end to end: requests and httpx(2) against the fault server on loopback.

Typical hand-written `requests` code for images and video jobs (and an httpx port of it) runs
unchanged, with only its base URL pointed at the fault server and its 10-second `time.sleep`
made fast.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
import requests
from opentelemetry.trace import SpanKind, StatusCode

import failsight
from conftest import Telemetry
from failsight import _body, _engine, _routes, traced_generation
from failsight.testing import USAGE, FaultServer, completion_body
from openai_calls import assert_one_request, async_client, sync_client

SCENARIO = "X-Failsight-Scenario"
MESSAGES = [{"role": "user", "content": "hello"}]
LIBS = ("requests", "httpx", "httpx-async", "httpx2", "httpx2-async")
BASE_URL = "https://api.cometapi.com/v1"  # the fault server's, set by the `article` fixture
_real_sleep = time.sleep


# ---------------------------------------------------------------------- raw-HTTP code as written
# Code as users write it against image and video endpoints; only the base URL is `BASE_URL`.
# fmt: off

def generate_image_safe(prompt: str, model: str = "dall-e-3") -> dict:
    """
    Generate an image with full error handling.
    Returns {"url": str | None, "bytes": bytes | None, "blocked": bool}
    """
    api_key = os.environ.get("COMETAPI_KEY")
    if not api_key:
        raise ValueError("COMETAPI_KEY is not set")

    BASE64_MODELS = {"gpt-image-2", "qwen-image"}

    headers = {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/json"
    }
    payload = {"model": model, "prompt": prompt, "size": "1024x1024"}

    if model in BASE64_MODELS:
        payload["output_format"] = "png"
    else:
        payload["response_format"] = "url"

    try:
        response = requests.post(
            f"{BASE_URL}/images/generations",
            json=payload,
            headers=headers,
            timeout=60
        )
        response.raise_for_status()
    except requests.exceptions.HTTPError as e:
        logging.error(f"Image generation HTTP error: {e.response.status_code} {e.response.text}")
        raise
    except requests.exceptions.Timeout:
        logging.error("Image generation timed out after 60s")
        raise

    data = response.json().get("data", [])

    if not data:
        logging.warning("Image generation returned empty data — prompt may have been filtered.")
        return {"url": None, "bytes": None, "blocked": True}

    item = data[0]

    if "revised_prompt" in item:
        logging.info(f"Provider revised prompt to: {item['revised_prompt']}")

    if "url" in item:
        return {"url": item["url"], "bytes": None, "blocked": False}

    return {
        "url": None,
        "bytes": base64.b64decode(item["b64_json"]),
        "blocked": False
    }


def submit_and_poll_video(
    prompt: str,
    model: str = "veo3-fast",
    max_wait: int = 600
) -> str:
    """Submit video task and poll to completion. Returns video URL."""
    api_key = os.environ.get("COMETAPI_KEY")
    if not api_key:
        raise ValueError("COMETAPI_KEY is not set")

    headers = {"Authorization": f"Bearer {api_key}"}

    try:
        response = requests.post(
            f"{BASE_URL}/videos",
            headers=headers,
            files={
                "prompt": (None, prompt),
                "model": (None, model),
                "size": (None, "16x9")
            },
            timeout=30
        )
        response.raise_for_status()
    except requests.exceptions.HTTPError as e:
        logging.error(f"Video submit failed: {e.response.status_code} {e.response.text}")
        raise

    task_id = response.json()["id"]
    logging.info(f"Video task submitted: {task_id}")

    poll_url = f"{BASE_URL}/videos/{task_id}"
    elapsed = 0
    interval = 10
    status = "unknown"   # initialize before loop
    progress = 0         # initialize before loop

    while elapsed < max_wait:
        try:
            poll_response = requests.get(poll_url, headers=headers, timeout=30)
            poll_response.raise_for_status()
        except requests.exceptions.HTTPError as e:
            logging.error(f"Poll request failed: {e.response.status_code}")
            raise

        result = poll_response.json()
        status = result.get("status", "unknown")
        progress = result.get("progress", 0)
        logging.info(f"Task {task_id}: status={status} progress={progress}%")

        if status == "succeeded":
            return result["output"][0]
        elif status in ("failed", "cancelled"):
            error_detail = result.get("error", "no error detail returned")
            raise RuntimeError(f"Video task {task_id} failed: {error_detail}")

        time.sleep(interval)
        elapsed += interval

    raise TimeoutError(
        f"Video task {task_id} did not complete within {max_wait}s. "
        f"Last status: {status}, progress: {progress}%"
    )


# The same two functions on httpx: `requests.*` calls and exceptions swapped, nothing else.


def generate_image_safe_httpx(prompt: str, model: str = "dall-e-3") -> dict:
    api_key = os.environ.get("COMETAPI_KEY")
    if not api_key:
        raise ValueError("COMETAPI_KEY is not set")

    BASE64_MODELS = {"gpt-image-2", "qwen-image"}

    headers = {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/json"
    }
    payload = {"model": model, "prompt": prompt, "size": "1024x1024"}

    if model in BASE64_MODELS:
        payload["output_format"] = "png"
    else:
        payload["response_format"] = "url"

    try:
        response = httpx.post(
            f"{BASE_URL}/images/generations",
            json=payload,
            headers=headers,
            timeout=60
        )
        response.raise_for_status()
    except httpx.HTTPStatusError as e:
        logging.error(f"Image generation HTTP error: {e.response.status_code} {e.response.text}")
        raise
    except httpx.TimeoutException:
        logging.error("Image generation timed out after 60s")
        raise

    data = response.json().get("data", [])

    if not data:
        logging.warning("Image generation returned empty data — prompt may have been filtered.")
        return {"url": None, "bytes": None, "blocked": True}

    item = data[0]

    if "revised_prompt" in item:
        logging.info(f"Provider revised prompt to: {item['revised_prompt']}")

    if "url" in item:
        return {"url": item["url"], "bytes": None, "blocked": False}

    return {
        "url": None,
        "bytes": base64.b64decode(item["b64_json"]),
        "blocked": False
    }


def submit_and_poll_video_httpx(
    prompt: str,
    model: str = "veo3-fast",
    max_wait: int = 600
) -> str:
    api_key = os.environ.get("COMETAPI_KEY")
    if not api_key:
        raise ValueError("COMETAPI_KEY is not set")

    headers = {"Authorization": f"Bearer {api_key}"}

    try:
        response = httpx.post(
            f"{BASE_URL}/videos",
            headers=headers,
            files={
                "prompt": (None, prompt),
                "model": (None, model),
                "size": (None, "16x9")
            },
            timeout=30
        )
        response.raise_for_status()
    except httpx.HTTPStatusError as e:
        logging.error(f"Video submit failed: {e.response.status_code} {e.response.text}")
        raise

    task_id = response.json()["id"]
    logging.info(f"Video task submitted: {task_id}")

    poll_url = f"{BASE_URL}/videos/{task_id}"
    elapsed = 0
    interval = 10
    status = "unknown"   # initialize before loop
    progress = 0         # initialize before loop

    while elapsed < max_wait:
        try:
            poll_response = httpx.get(poll_url, headers=headers, timeout=30)
            poll_response.raise_for_status()
        except httpx.HTTPStatusError as e:
            logging.error(f"Poll request failed: {e.response.status_code}")
            raise

        result = poll_response.json()
        status = result.get("status", "unknown")
        progress = result.get("progress", 0)
        logging.info(f"Task {task_id}: status={status} progress={progress}%")

        if status == "succeeded":
            return result["output"][0]
        elif status in ("failed", "cancelled"):
            error_detail = result.get("error", "no error detail returned")
            raise RuntimeError(f"Video task {task_id} failed: {error_detail}")

        time.sleep(interval)
        elapsed += interval

    raise TimeoutError(
        f"Video task {task_id} did not complete within {max_wait}s. "
        f"Last status: {status}, progress: {progress}%"
    )


# fmt: on

ARTICLE = {
    "requests": (generate_image_safe, submit_and_poll_video),
    "httpx": (generate_image_safe_httpx, submit_and_poll_video_httpx),
}


class FastTime:
    """Stands in for the article module's `time`: each 10 s sleep takes `step` real seconds."""

    def __init__(self, step: float = 0.0) -> None:
        self.step = step
        self.sleeps = 0

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        if self.step:
            _real_sleep(self.step)


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def patched(telemetry: Telemetry) -> Iterator[Telemetry]:
    failsight.instrument_http()
    yield telemetry
    failsight.uninstrument_http()


@pytest.fixture
def fast_time(monkeypatch: pytest.MonkeyPatch) -> FastTime:
    clock = FastTime()
    monkeypatch.setattr(sys.modules[__name__], "time", clock)
    return clock


@pytest.fixture
def article(
    patched: Telemetry, server: FaultServer, fast_time: FastTime, monkeypatch: pytest.MonkeyPatch
) -> Telemetry:
    monkeypatch.setenv("COMETAPI_KEY", "sk-article-test-key-123456")
    monkeypatch.setattr(sys.modules[__name__], "BASE_URL", server.base_url)
    return patched


def reconfigure(t: Telemetry, **options: Any) -> None:
    failsight.configure(
        registry=t.registry, tracer_provider=t.provider, **{"prices": False, **options}
    )


def client_spans(t: Telemetry) -> list[Any]:
    return [s for s in t.spans() if s.kind == SpanKind.CLIENT]


class Caller:
    """One HTTP library, driven the way its users drive it."""

    def __init__(self, lib: str, timeout: float = 5.0) -> None:
        self.lib = lib
        self.is_async = lib.endswith("-async")
        module = httpx2 if lib.startswith("httpx2") else httpx
        self.module = module
        self.client: Any = None
        if lib != "requests":
            cls = module.AsyncClient if self.is_async else module.Client
            self.client = cls(timeout=timeout)
        self.timeout = timeout

    async def send(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        scenario: str | None = None,
        stream: bool = False,
    ) -> Any:
        headers = {SCENARIO: scenario} if scenario else {}
        if self.client is None:
            return requests.request(
                method, url, json=body, headers=headers, timeout=self.timeout, stream=stream
            )
        request = self.client.build_request(method, url, json=body, headers=headers)
        if self.is_async:
            return await self.client.send(request, stream=stream)
        return self.client.send(request, stream=stream)

    async def lines(self, response: Any) -> list[str]:
        if self.client is None:
            return [line.decode() for line in response.iter_lines()]
        if self.is_async:
            return [line async for line in response.aiter_lines()]
        return list(response.iter_lines())

    async def close(self) -> None:
        if self.client is not None:
            if self.is_async:
                await self.client.aclose()
            else:
                self.client.close()


@pytest.fixture(params=LIBS)
async def caller(request: pytest.FixtureRequest) -> Any:
    lib = Caller(request.param)
    yield lib
    await lib.close()


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": MESSAGES, **extra}


# ---------------------------------------------------------------------- raw-HTTP code as written


@pytest.mark.parametrize("variant", list(ARTICLE))
def test_article_image_empty_data_is_image_filtered(article: Telemetry, variant: str) -> None:
    generate, _ = ARTICLE[variant]
    assert generate("a cat", model="dall-e-3@image_empty") == {
        "url": None,
        "bytes": None,
        "blocked": True,
    }
    model = "dall-e-3@image_empty"
    assert_one_request(article, "image_generation", model, "soft", "image_filtered")
    (span,) = client_spans(article)
    assert span.name == "image_generation dall-e-3@image_empty"
    assert span.attributes["failsight.failure_reason"] == "image_filtered"
    assert span.attributes["http.response.status_code"] == 200
    assert span.status.status_code == StatusCode.ERROR


@pytest.mark.parametrize("variant", list(ARTICLE))
def test_article_image_ok(article: Telemetry, variant: str) -> None:
    generate, _ = ARTICLE[variant]
    assert generate("a cat")["url"]
    assert_one_request(article, "image_generation", "dall-e-3", "none", None)


@pytest.mark.parametrize("variant", list(ARTICLE))
def test_article_video_failed(article: Telemetry, variant: str) -> None:
    _, submit = ARTICLE[variant]
    with pytest.raises(RuntimeError, match="failed"):
        submit("a cat", model="sora-2@video_failed")
    assert article.value("genai_video_jobs_total", status="failed") == 1
    assert article.value("genai_video_jobs_total") == 1
    assert article.value("genai_video_job_duration_seconds_count", status="failed") == 1
    # The create is the logical request (it worked); polls only advance the job.
    assert_one_request(article, "video_generation", "sora-2@video_failed", "none", None)
    polls = [s for s in client_spans(article) if s.attributes["gen_ai.request.model"] == "unknown"]
    assert polls and polls[-1].attributes["failsight.failure_reason"] == "video_failed"


@pytest.mark.parametrize("variant", list(ARTICLE))
def test_article_kling_succeed_counts_as_succeeded(
    article: Telemetry, fast_time: FastTime, variant: str
) -> None:
    _, submit = ARTICLE[variant]
    # The article only checks "succeeded", so it polls Kling's "succeed" until max_wait.
    with pytest.raises(TimeoutError, match="Last status: succeed"):
        submit("a cat", model="kling-v2@video_succeed", max_wait=60)
    assert fast_time.sleeps == 6
    assert article.value("genai_video_jobs_total", status="succeeded") == 1
    assert article.value("genai_video_jobs_total") == 1  # later polls of the ended job: no end
    assert article.value("genai_requests_total") == 1


@pytest.mark.parametrize("variant", list(ARTICLE))
def test_article_video_stuck_past_deadline_times_out(
    article: Telemetry, fast_time: FastTime, variant: str
) -> None:
    reconfigure(article, video_job_timeout=0.05)
    fast_time.step = 0.02
    _, submit = ARTICLE[variant]
    with pytest.raises(TimeoutError, match="Last status: queued"):
        submit("a cat", model="sora-2@video_stuck", max_wait=100)
    # Ended at the first poll past the deadline, not at shutdown.
    assert article.value("genai_video_jobs_total", status="timed_out") == 1
    assert article.value("genai_video_jobs_total") == 1
    assert article.value("genai_video_job_duration_seconds_sum") >= 0.05
    assert_one_request(article, "video_generation", "sora-2@video_stuck", "none", None)


@pytest.mark.parametrize("variant", list(ARTICLE))
def test_article_video_stuck_inside_a_scope_is_video_timeout(
    article: Telemetry, fast_time: FastTime, variant: str
) -> None:
    reconfigure(article, video_job_timeout=0.05)
    fast_time.step = 0.02
    submit = traced_generation(name="article_video")(ARTICLE[variant][1])
    with pytest.raises(TimeoutError):
        submit("a cat", model="sora-2@video_stuck", max_wait=100)
    labels = {"call_site": "article_video", "failure_class": "soft"}
    assert article.value("genai_requests_total") == 1
    assert article.value("genai_failures_total", reason="video_timeout", **labels) == 1
    assert article.value("genai_video_jobs_total", status="timed_out") == 1


# ---------------------------------------------------------------------- each failure class

# (path, body, scenario, operation, model, failure_class, reason)
CASES: list[tuple[str, dict[str, Any], str, str, str, str, str | None]] = [
    ("/chat/completions", chat_body(), "ok", "chat", "gpt-4o-mini", "none", None),
    ("/chat/completions", chat_body(), "tool_calls", "chat", "gpt-4o-mini", "none", None),
    ("/chat/completions", chat_body(), "http_429", "chat", "gpt-4o-mini", "hard", "rate_limited"),
    ("/chat/completions", chat_body(), "http_500", "chat", "gpt-4o-mini", "hard", "server_error"),
    ("/chat/completions", chat_body(), "content_filter", "chat", "gpt-4o-mini", "soft",
     "content_filter"),
    ("/chat/completions", chat_body(), "length", "chat", "gpt-4o-mini", "soft", "length"),
    ("/chat/completions", chat_body(), "invalid_json", "chat", "gpt-4o-mini", "hard",
     "invalid_response"),
    ("/completions", {"model": "davinci", "prompt": "hi"}, "length", "text_completion", "davinci",
     "soft", "length"),
    ("/responses", {"model": "gpt-4o", "input": "hi"}, "content_filter", "chat", "gpt-4o", "soft",
     "content_filter"),
    ("/embeddings", {"model": "emb-3", "input": "hi"}, "ok", "embeddings", "emb-3", "none", None),
    ("/images/generations", {"model": "dall-e-3", "prompt": "x"}, "image_empty",
     "image_generation", "dall-e-3", "soft", "image_filtered"),
    ("/images/generations", {"model": "dall-e-3", "prompt": "x"}, "http_400",
     "image_generation", "dall-e-3", "hard", "bad_request"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "scenario", "operation", "model", "failure_class", "reason"), CASES
)
async def test_failure_class(
    patched: Telemetry,
    server: FaultServer,
    caller: Caller,
    path: str,
    body: dict[str, Any],
    scenario: str,
    operation: str,
    model: str,
    failure_class: str,
    reason: str | None,
) -> None:
    response = await caller.send("POST", server.base_url + path, body=body, scenario=scenario)
    assert_one_request(patched, operation, model, failure_class, reason)
    (span,) = client_spans(patched)
    assert span.name == f"{operation} {model}"
    assert span.attributes["gen_ai.provider.name"] == "127.0.0.1"
    assert span.attributes["server.port"] == server.port
    assert span.attributes["failsight.call_site"] == "unscoped"
    assert span.attributes["failsight.failure_class"] == failure_class
    assert span.attributes["http.response.status_code"] == response.status_code
    if reason is None:
        assert span.status.status_code == StatusCode.UNSET
        assert patched.value("genai_tokens_total", token_type="input") == USAGE["prompt_tokens"]
    else:
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes["error.type"] == reason
    if failure_class == "soft" and reason in ("content_filter", "length"):
        assert patched.value("genai_finish_reasons_total", finish_reason=reason) == 1
    if failure_class == "hard" and reason != "invalid_response":
        assert span.attributes["failsight.request_id"].startswith("req_")
    if reason == "rate_limited":
        assert span.attributes["failsight.error.code"] == "rate_limit_exceeded"  # from the body
    # The caller's body is still there to read.
    assert response.content
    if reason != "invalid_response":
        json.loads(response.content)
    assert patched.value("genai_telemetry_errors_total") == 0


# (scenario, failure_class, reason)
STREAM_CASES = [
    ("ok", "none", None),
    ("content_filter", "soft", "content_filter"),
    ("length", "soft", "length"),
    ("empty_content", "soft", "empty_content"),
    ("drop_mid_stream", "hard", "connection"),
]


@pytest.mark.parametrize(("scenario", "failure_class", "reason"), STREAM_CASES)
async def test_sse_stream_is_observed_as_the_caller_reads(
    patched: Telemetry,
    server: FaultServer,
    caller: Caller,
    scenario: str,
    failure_class: str,
    reason: str | None,
) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    url = server.base_url + "/chat/completions"
    response = await caller.send("POST", url, body=body, scenario=scenario, stream=True)
    # Nothing read ahead: the call is still open until the caller reads the stream.
    assert patched.value("genai_requests_total") == 0
    assert patched.value("genai_in_flight_requests") == 1
    try:
        lines = await caller.lines(response)
    except Exception as exc:
        assert scenario == "drop_mid_stream", exc
    else:
        assert scenario != "drop_mid_stream"
        assert "data: [DONE]" in lines  # the caller got the whole stream
    assert_one_request(patched, "chat", "gpt-4o-mini", failure_class, reason)
    (span,) = client_spans(patched)
    assert span.attributes["gen_ai.request.stream"] is True
    if scenario == "ok":
        assert patched.value("genai_time_to_first_token_seconds_count") == 1
        output_tokens = patched.value("genai_tokens_total", token_type="output")
        assert output_tokens == USAGE["completion_tokens"]
        assert patched.value("genai_finish_reasons_total", finish_reason="stop") == 1


async def test_responses_stream_is_observed(
    patched: Telemetry, server: FaultServer, caller: Caller
) -> None:
    body = {"model": "gpt-4o", "input": "hi", "stream": True}
    url = server.base_url + "/responses"
    response = await caller.send("POST", url, body=body, scenario="length", stream=True)
    await caller.lines(response)
    assert_one_request(patched, "chat", "gpt-4o", "soft", "length")


def test_sse_body_read_by_requests_at_once_is_judged_at_once(
    patched: Telemetry, server: FaultServer
) -> None:
    response = requests.post(
        server.base_url + "/chat/completions",
        json=chat_body(stream=True),
        headers={SCENARIO: "content_filter"},
    )
    assert_one_request(patched, "chat", "gpt-4o-mini", "soft", "content_filter")
    assert b"[DONE]" in response.content


async def test_stream_closed_early_is_not_a_failure(
    patched: Telemetry, server: FaultServer, caller: Caller
) -> None:
    url = server.base_url + "/chat/completions"
    response = await caller.send("POST", url, body=chat_body(stream=True), stream=True)
    if caller.lib == "requests":
        next(response.iter_lines())
        response.close()
    elif caller.is_async:
        await response.aiter_lines().__anext__()
        await response.aclose()
    else:
        next(response.iter_lines())
        response.close()
    assert_one_request(patched, "chat", "gpt-4o-mini", "none", None)


def test_stream_never_read_is_ended_when_dropped(patched: Telemetry, server: FaultServer) -> None:
    response = requests.post(
        server.base_url + "/chat/completions", json=chat_body(stream=True), stream=True
    )
    assert patched.value("genai_in_flight_requests") == 1
    response.close()
    del response  # abandoned: recorded once, as a stream closed early
    assert_one_request(patched, "chat", "gpt-4o-mini", "none", None)


def test_streamed_json_body_is_judged_when_read(patched: Telemetry, server: FaultServer) -> None:
    with httpx.Client() as client:
        request = client.build_request(
            "POST",
            server.base_url + "/images/generations",
            json={"model": "dall-e-3", "prompt": "x"},
            headers={SCENARIO: "image_empty"},
        )
        response = client.send(request, stream=True)
        assert patched.value("genai_requests_total") == 0
        assert response.read()
        response.close()
    assert_one_request(patched, "image_generation", "dall-e-3", "soft", "image_filtered")


def test_body_already_in_memory_is_judged_at_once(patched: Telemetry) -> None:
    class InMemory(requests.adapters.BaseAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> requests.Response:
            response = requests.Response()
            response.status_code = 200
            response._content = b'{"created": 1, "data": []}'
            response.request = request
            return response

        def close(self) -> None:
            pass

    session = requests.Session()
    session.mount("http://gw.local/", InMemory())
    response = session.post(
        "http://gw.local/v1/images/edits",
        files={"image": ("a.png", b"png"), "model": (None, "gpt-image-1")},
        stream=True,
    )
    assert response.json() == {"created": 1, "data": []}
    assert_one_request(patched, "image_generation", "gpt-image-1", "soft", "image_filtered")


def test_gzip_event_stream_is_decoded_for_observation(patched: Telemetry) -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "length"}]}
    body = gzip.compress(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
        return httpx.Response(200, stream=httpx.ByteStream(body), headers=headers)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        request = client.build_request(
            "POST", "http://gw.local/v1/chat/completions", json=chat_body(stream=True)
        )
        response = client.send(request, stream=True)
        assert next(response.iter_lines()).startswith("data: ")
        response.close()
    assert_one_request(patched, "chat", "gpt-4o-mini", "soft", "length")


async def test_timeout_is_hard_and_passes_through(patched: Telemetry, server: FaultServer) -> None:
    for lib in LIBS:
        caller = Caller(lib, timeout=0.1)
        with pytest.raises(Exception) as raised:
            await caller.send(
                "POST", server.base_url + "/chat/completions", body=chat_body(), scenario="timeout"
            )
        await caller.close()
        assert "Timeout" in type(raised.value).__name__, lib
    assert patched.value("genai_requests_total", failure_class="hard") == len(LIBS)
    assert patched.value("genai_failures_total", reason="timeout") == len(LIBS)
    assert patched.value("genai_in_flight_requests") == 0


def test_exceptions_from_send_are_reraised_unchanged(patched: Telemetry) -> None:
    error = requests.exceptions.ReadTimeout("read timed out")

    class Failing(requests.adapters.HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            raise error

    session = requests.Session()
    session.mount("http://gw.local/", Failing())
    with pytest.raises(requests.exceptions.ReadTimeout) as raised:
        session.post("http://gw.local/v1/chat/completions", json=chat_body())
    assert raised.value is error

    connect_error = httpx.ConnectError("refused")

    def handler(request: httpx.Request) -> httpx.Response:
        raise connect_error

    transport = httpx.MockTransport(handler)
    with (
        httpx.Client(transport=transport) as client,
        pytest.raises(httpx.ConnectError) as raised_httpx,
    ):
        client.post("http://gw.local/v1/embeddings", json={"model": "e", "input": "x"})
    assert raised_httpx.value is connect_error
    assert patched.value("genai_failures_total", reason="timeout") == 1
    assert patched.value("genai_failures_total", reason="connection", operation="embeddings") == 1


@pytest.mark.parametrize("path", ["/v1/models", "/health", "/v1/chat/completions/extra"])
async def test_other_requests_pass_through_untouched(
    telemetry: Telemetry, server: FaultServer, caller: Caller, path: str
) -> None:
    url = server.url + path
    baseline = await caller.send("GET", url)
    failsight.instrument_http()
    try:
        response = await caller.send("GET", url)
        streamed = await caller.send("GET", url, stream=True)
    finally:
        failsight.uninstrument_http()
    assert response.status_code == baseline.status_code
    assert vars(response).keys() == vars(baseline).keys()
    assert type(streamed.stream if caller.client else streamed.raw) is type(
        baseline.stream if caller.client else baseline.raw
    )
    assert "iter_content" not in vars(streamed)
    assert response.json() == baseline.json() or path != "/v1/models"
    assert telemetry.value("genai_requests_total") == 0
    assert telemetry.spans() == []
    if caller.is_async:
        await streamed.aclose()
    else:
        streamed.close()


async def test_get_on_a_create_route_is_not_recorded(
    patched: Telemetry, server: FaultServer, caller: Caller
) -> None:
    await caller.send("GET", server.base_url + "/chat/completions")
    assert patched.value("genai_requests_total") == 0
    assert patched.spans() == []


async def test_caller_gets_the_same_response_object(
    patched: Telemetry, server: FaultServer
) -> None:
    seen: list[Any] = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, **kw: seen.append(r))
    response = session.post(server.base_url + "/chat/completions", json=chat_body())
    assert response is seen[-1]
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert "iter_content" not in vars(response)

    with httpx.Client(event_hooks={"response": [seen.append]}) as client:
        response = client.post(server.base_url + "/chat/completions", json=chat_body())
    assert response is seen[-1]

    async def hook(r: Any) -> None:
        seen.append(r)

    async with httpx2.AsyncClient(event_hooks={"response": [hook]}) as aclient:
        response = await aclient.post(server.base_url + "/chat/completions", json=chat_body())
    assert response is seen[-1]
    assert response.json()["object"] == "chat.completion"
    assert patched.value("genai_requests_total") == 3


# ---------------------------------------------------------------------- video jobs over raw HTTP


def test_video_task_not_exist_on_first_poll_is_transient(
    patched: Telemetry, server: FaultServer
) -> None:
    url = server.base_url + "/videos"

    @traced_generation(name="raw_video")
    def make_video() -> str:
        with httpx.Client() as client:
            job = client.post(url, data={"model": "sora-2", "prompt": "x"},
                              headers={SCENARIO: "video_task_not_exist"}).json()  # fmt: skip
            status = job["status"]
            while status not in ("completed", "failed"):
                poll = client.get(f"{url}/{job['id']}")
                if poll.status_code == 404:
                    assert poll.json()["error"]["code"] == "task_not_exist"
                    continue
                status = poll.json()["status"]
        return str(status)

    assert make_video() == "completed"
    assert patched.value("genai_requests_total", failure_class="none", call_site="raw_video") == 1
    assert patched.value("genai_requests_total") == 1
    assert patched.value("genai_video_jobs_total", status="succeeded") == 1
    assert patched.value("genai_retries_total") == 0


def test_video_failing_inside_a_scope_fails_the_scope(
    patched: Telemetry, server: FaultServer
) -> None:
    @traced_generation(name="raw_video")
    def make_video() -> str:
        job = requests.post(
            server.base_url + "/videos", json={"model": "sora-2@video_cancelled", "prompt": "x"}
        ).json()
        while job["status"] not in ("completed", "cancelled"):
            job = requests.get(f"{server.base_url}/videos/{job['id']}").json()
        return str(job["status"])

    assert make_video() == "cancelled"
    failures = patched.value(
        "genai_failures_total", reason="video_cancelled", call_site="raw_video"
    )
    assert failures == 1
    assert patched.value("genai_video_jobs_total", status="cancelled") == 1


def test_open_video_jobs_are_bounded(patched: Telemetry, server: FaultServer) -> None:
    reconfigure(patched, max_open_video_jobs=2)
    for _ in range(3):
        requests.post(
            server.base_url + "/videos", json={"model": "sora-2", "prompt": "x"},
            headers={SCENARIO: "video_stuck"},
        )  # fmt: skip
    assert patched.value("genai_video_jobs_total", status="timed_out") == 1


def test_video_deadline_is_checked_at_any_tracked_call(
    patched: Telemetry, server: FaultServer
) -> None:
    reconfigure(patched, video_job_timeout=0.05)
    requests.post(
        server.base_url + "/videos", json={"model": "sora-2", "prompt": "x"},
        headers={SCENARIO: "video_stuck"},
    )  # fmt: skip
    _real_sleep(0.06)
    assert patched.value("genai_video_jobs_total") == 0
    requests.post(server.base_url + "/chat/completions", json=chat_body())  # not a poll
    assert patched.value("genai_video_jobs_total", status="timed_out") == 1


# ---------------------------------------------------------------------- exactly once


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("stream", [False, True])
async def test_sdk_with_both_patches_records_each_call_once(
    patched: Telemetry, server: FaultServer, mode: str, stream: bool
) -> None:
    failsight.instrument_openai()
    try:
        client = sync_client(server) if mode == "sync" else async_client(server)
        result = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=stream,
            extra_headers={SCENARIO: "content_filter"},
        )  # fmt: skip
        if mode == "async":
            result = await result
        if stream and mode == "async":
            _ = [chunk async for chunk in result]
        elif stream:
            _ = list(result)
    finally:
        failsight.uninstrument_openai()
    assert_one_request(patched, "chat", "gpt-4o-mini", "soft", "content_filter")
    assert len(client_spans(patched)) == 1
    assert patched.value("genai_finish_reasons_total") == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_sdk_with_only_the_http_patch_is_recorded_by_it(
    patched: Telemetry, server: FaultServer, mode: str
) -> None:
    client = sync_client(server) if mode == "sync" else async_client(server)
    result = client.embeddings.create(model="text-embedding-3-small", input="x")
    if mode == "async":
        await result
    assert_one_request(patched, "embeddings", "text-embedding-3-small", "none", None)
    (span,) = client_spans(patched)
    assert span.attributes["openai.api.type"] == "embeddings"


def test_inside_a_scope_calls_contribute_and_the_scope_counts_once(
    patched: Telemetry, server: FaultServer
) -> None:
    @traced_generation(name="raw_chat")
    def ask() -> str:
        for scenario in ("http_500", "ok"):
            response = requests.post(
                server.base_url + "/chat/completions", json=chat_body(),
                headers={SCENARIO: scenario},
            )  # fmt: skip
            if response.ok:
                return str(response.json()["choices"][0]["message"]["content"])
        return ""

    assert ask()
    labels = {"call_site": "raw_chat", "operation": "chat", "model": "gpt-4o-mini"}
    assert patched.value("genai_requests_total") == 1
    assert patched.value("genai_requests_total", failure_class="none", **labels) == 1
    assert patched.value("genai_retries_total", reason="server_error", **labels) == 1
    assert patched.value("genai_request_attempts_sum", **labels) == 2
    assert patched.value("genai_tokens_total", token_type="input", **labels) == 11
    assert patched.value("genai_finish_reasons_total", finish_reason="stop", **labels) == 1
    scope = patched.span("raw_chat")
    children = client_spans(patched)
    assert len(children) == 2
    assert all(c.parent is not None and c.parent.span_id == scope.context.span_id for c in children)
    assert scope.attributes["failsight.attempts"] == 2


async def test_inside_an_async_scope_a_soft_failure_fails_the_scope(
    patched: Telemetry, server: FaultServer
) -> None:
    @traced_generation(name="raw_async")
    async def ask() -> None:
        async with httpx2.AsyncClient() as client:
            await client.post(
                server.base_url + "/chat/completions", json=chat_body(),
                headers={SCENARIO: "length"},
            )  # fmt: skip

    await ask()
    assert patched.value("genai_failures_total", reason="length", call_site="raw_async") == 1
    assert patched.value("genai_requests_total") == 1


# ---------------------------------------------------------------------- telemetry never breaks


def test_broken_classifier_never_changes_what_the_caller_gets(
    patched: Telemetry,
    server: FaultServer,
    swallow_internal_errors: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("classifier bug")

    monkeypatch.setattr(_body, "classify_result", broken)
    monkeypatch.setattr(_engine, "classify_exception", broken)
    monkeypatch.setattr(_body, "_namespace", broken)
    url = server.base_url + "/chat/completions"
    response = requests.post(url, json=chat_body(), headers={SCENARIO: "content_filter"})
    assert response.json()["choices"][0]["finish_reason"] == "content_filter"
    with httpx.Client() as client, client.stream("POST", url, json=chat_body(stream=True)) as r:
        assert "data: [DONE]" in list(r.iter_lines())
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(url, json=chat_body(), headers={SCENARIO: "timeout"}, timeout=0.1)
    assert patched.value("genai_telemetry_errors_total") >= 3
    # Every call still ended: no span or in-flight count left open.
    assert patched.value("genai_in_flight_requests") == 0
    assert len(client_spans(patched)) == 3


# ---------------------------------------------------------------------- lifecycle and routes


def _sends() -> tuple[Any, ...]:
    return (
        requests.Session.__dict__["send"],
        httpx.Client.__dict__["send"],
        httpx.AsyncClient.__dict__["send"],
        httpx2.Client.__dict__["send"],
        httpx2.AsyncClient.__dict__["send"],
    )


@pytest.mark.parametrize("order", ["http_last", "openai_last"])
def test_instrument_is_idempotent_and_uninstrument_restores_exactly(
    telemetry: Telemetry, order: str
) -> None:
    originals = _sends()
    failsight.instrument_http()
    failsight.instrument_http()
    patched = _sends()
    assert all(now is not was for now, was in zip(patched, originals, strict=True))
    assert requests.Session.__dict__["send"].__wrapped__ is originals[0]  # one layer only
    failsight.instrument_openai()
    assert _sends() == patched  # the httpx send wrapper is shared, not stacked
    if order == "http_last":
        failsight.uninstrument_openai()
        assert _sends() == patched
        failsight.uninstrument_http()
    else:
        failsight.uninstrument_http()
        assert _sends()[0] is originals[0]
        assert _sends()[1:] == patched[1:]  # still needed by the SDK patch
        failsight.uninstrument_openai()
    assert all(now is was for now, was in zip(_sends(), originals, strict=True))
    failsight.uninstrument_http()  # harmless twice
    assert all(now is was for now, was in zip(_sends(), originals, strict=True))


@pytest.mark.parametrize(
    ("routes", "error", "message"),
    [
        ([("/x", "chat")], TypeError, "mapping"),
        ({"chat/completions": "chat"}, ValueError, "starting with '/'"),
        ({"/v1/x?y=1": "chat"}, ValueError, "without query"),
        ({"/gw//chat": "chat"}, ValueError, "empty segment"),
        ({"/gw/{id": "chat"}, ValueError, "placeholder"),
        ({"/{id}": "video_poll"}, ValueError, "fixed segment"),
        ({"/gw/chat": "chatting"}, ValueError, "unknown kind 'chatting'"),
        ({1: "chat"}, TypeError, "path string"),
    ],
)
def test_routes_are_validated_before_patching(
    telemetry: Telemetry, routes: Any, error: type[Exception], message: str
) -> None:
    originals = _sends()
    with pytest.raises(error, match=message):
        failsight.instrument_http(routes=routes)
    assert _sends() == originals


def test_custom_routes_for_a_gateway_prefix(telemetry: Telemetry) -> None:
    finished = {"choices": [{"finish_reason": "content_filter", "message": {"content": None}}]}
    job = {"task_id": "t1", "status": "succeed"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/kling/"):
            return httpx.Response(200, json=job)
        return httpx.Response(200, json=finished)

    failsight.instrument_http(
        routes={
            "/gw/llm/chat": "chat",
            "/kling/v1/videos/text2video": "video_generation",
            "/kling/v1/videos/text2video/{task_id}": "video_poll",
            "/embeddings": None,
        }
    )
    try:
        with httpx.Client(transport=httpx.MockTransport(handler)) as client:
            client.post("http://gw.local/gw/llm/chat", json={"model": "m1"})
            client.post("http://gw.local/v1/embeddings", json={"model": "e"})  # dropped route
            client.post("http://gw.local/kling/v1/videos/text2video", json={"model": "kling"})
            client.get("http://gw.local/kling/v1/videos/text2video/t1")
    finally:
        failsight.uninstrument_http()
    assert telemetry.value("genai_failures_total", reason="content_filter", model="m1") == 1
    assert telemetry.value("genai_requests_total") == 2
    assert telemetry.value("genai_requests_total", operation="embeddings") == 0
    assert telemetry.value("genai_video_jobs_total", status="succeeded", model="kling") == 1


@pytest.mark.parametrize(
    ("method", "path", "matched"),
    [
        ("POST", "/v1/chat/completions", "/chat/completions"),
        ("POST", "/openai/deployments/gpt/chat/completions", "/chat/completions"),
        ("POST", "/v1/completions", "/completions"),
        ("POST", "/v1/videos/", "/videos"),
        ("GET", "/v1/videos/video_123", "/videos/{id}"),
        ("POST", "/v1/videos/video_123/remix", "/videos/{id}/remix"),
        ("GET", "/v1/videos/video_123/content", None),
        ("DELETE", "/v1/videos/video_123", None),
        ("GET", "/v1/chat/completions", None),
        ("GET", "/v1/models", None),
        ("POST", "/completions/other", None),
        ("GET", "/", None),
    ],
)
def test_route_matching(method: str, path: str, matched: str | None) -> None:
    table = _routes.build_table(None)
    routes = table.candidates(path)
    found = table.match(method, path, routes) if routes else None
    assert (found[0].pattern if found else None) == matched
    if matched == "/videos/{id}":
        assert found is not None and found[1] == "video_123"


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"messages": [{"content": "\\"model\\": \\"x\\""}], "model": "gpt"}',
         "application/json", ("gpt", False)),
        ('{"model": "gpt", "stream": true}', None, ("gpt", True)),
        (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nsora-2\r\n--b--\r\n',
         "multipart/form-data; boundary=b", ("sora-2", False)),
        ("prompt=a+cat&model=dall-e%403", "application/x-www-form-urlencoded",
         ("dall-e@3", False)),
        (b"not json", "application/json", ("unknown", False)),
        (b"[1, 2]", "application/json", ("unknown", False)),
        (None, None, ("unknown", False)),
        (iter([b"{}"]), None, ("unknown", False)),
    ],
)  # fmt: skip
def test_model_is_read_from_the_request_body(
    body: Any, content_type: str | None, expected: tuple[str, bool]
) -> None:
    assert _routes.request_fields(body, content_type) == expected


@pytest.mark.parametrize("is_async", [False, True])
def test_another_instrumentations_wrapper_underneath_keeps_working(
    patched: Telemetry, is_async: bool
) -> None:
    """An instrumentation that wrapped `send` with wrapt before failsight (as OpenTelemetry's
    httpx one does) still sees every request, bound to its client, and gets its wrapper back."""
    import wrapt

    owner = httpx.AsyncClient if is_async else httpx.Client
    failsight.uninstrument_http()
    plain = owner.__dict__["send"]
    seen: list[Any] = []

    def theirs(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        seen.append(instance)
        return wrapped(*args, **kwargs)

    wrapt.wrap_function_wrapper(owner, "send", theirs)
    wrapper = owner.__dict__["send"]
    try:
        failsight.instrument_http()
        handler = httpx.MockTransport(lambda request: httpx.Response(200, json=completion_body()))
        if is_async:

            async def main() -> None:
                async with httpx.AsyncClient(transport=handler) as client:
                    await client.get("http://gw.local/v1/models")
                    await client.post("http://gw.local/v1/chat/completions", json={"model": "m"})
                    seen.append(client)

            import asyncio

            asyncio.run(main())
        else:
            with httpx.Client(transport=handler) as client:
                client.get("http://gw.local/v1/models")
                client.post("http://gw.local/v1/chat/completions", json={"model": "m"})
                seen.append(client)
        assert seen[:2] == [seen[2], seen[2]]  # theirs ran for both, with the client bound
        assert patched.value("genai_requests_total", failure_class="none") == 1
        failsight.uninstrument_http()
        assert owner.__dict__["send"] is wrapper
    finally:
        failsight.uninstrument_http()
        owner.send = plain
