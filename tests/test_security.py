"""Security: loopback by default, mutual TLS scraped by real Prometheus, no credential in
any span or exposition line, captured content bounded, hostile label values kept valid."""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
import string
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

import failsight
from conftest import Telemetry, api_error, sdk_httpx
from failsight._redact import mask_secrets
from failsight.testing import FaultServer
from prom_harness import PrometheusServer, require_binary

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --------------------------------------------------------------------------- credentials

KEY_CHARS = string.ascii_letters + string.digits
B64TOKEN_CHARS = KEY_CHARS + "-._~+/"


@st.composite
def credentials(draw: st.DrawFn) -> tuple[str, str]:
    """(credential as it appears in text, the secret part that must never be exported)."""
    # A random tail makes the secret unique: hypothesis also draws strings seen in the code.
    nonce = secrets.token_hex(6)
    form = draw(st.sampled_from(["sk", "sk-proj", "bearer", "groq", "hf", "aws", "jwt", "azure"]))
    if form == "sk":
        body = draw(st.text(KEY_CHARS, min_size=8, max_size=64)) + nonce
        return f"sk-{body}", body
    if form == "sk-proj":
        body = draw(st.text(KEY_CHARS + "-_", min_size=8, max_size=64)) + nonce
        return f"sk-proj-{body}", body
    if form == "groq":
        body = draw(st.text(KEY_CHARS, min_size=40, max_size=40)) + nonce
        return f"gsk_{body}", body
    if form == "hf":
        body = draw(st.text(string.ascii_letters, min_size=22, max_size=22)) + nonce
        return f"hf_{body}", body
    if form == "aws":
        body = draw(st.text(string.ascii_uppercase, min_size=4, max_size=4)) + nonce.upper()
        return f"AKIA{body}", body
    if form == "jwt":
        payload = draw(st.text(KEY_CHARS + "-_", min_size=10, max_size=40))
        signature = draw(st.text(KEY_CHARS + "-_", min_size=0, max_size=30)) + nonce
        return f"eyJhbGciOiJIUzI1NiJ9.eyJ{payload}.{signature}", signature
    if form == "azure":  # 32 hex, no prefix: masked after a key word
        key = "".join(draw(st.lists(st.sampled_from("0123456789abcdef"), min_size=20, max_size=20)))
        key += nonce
        return f"invalid subscription key '{key}'", key
    scheme = draw(st.sampled_from(["Bearer", "bearer", "BEARER"]))
    token = draw(st.text(B64TOKEN_CHARS, min_size=4, max_size=64)) + nonce
    return f"{scheme} {token}", token


@st.composite
def urls(draw: st.DrawFn, secret: str, credential: str) -> str:
    """A request URL carrying a secret in its query, path or user info."""
    host = draw(st.sampled_from(["api.openai.com", "gw.example.com:8443", "127.0.0.1:1"]))
    where = draw(st.sampled_from(["query", "path", "userinfo"]))
    if where == "query":
        name = draw(
            st.sampled_from(
                ["api_key", "key", "apikey", "token", "access_token", "id_token", "client_secret"]
            )
        )
        return f"https://{host}/v1/chat/completions?stream=false&{name}={secret}&x=1"
    if credential.startswith("sk-"):
        if where == "path":
            return f"https://{host}/v1/keys/{credential}/usage"
        return f"https://user:{credential}@{host}/v1/chat/completions"
    return f"https://{host}/v1/chat/completions?access_token={secret}"


# Around a credential: any text, or a prefix that another pattern could glue onto it.
context_text = st.one_of(
    st.text(max_size=40), st.sampled_from(["sk-", "pk-", "rk-", "token=", "Bearer ", "\\x85"])
)


def span_strings(span: ReadableSpan) -> Iterator[str]:
    """Every string a span exports: name, attributes, events, status, resource."""
    yield span.name
    if span.status.description:
        yield span.status.description

    def values(attributes: Any) -> Iterator[str]:
        for value in (attributes or {}).values():
            if isinstance(value, (tuple, list)):
                yield from (str(item) for item in value)
            else:
                yield str(value)

    yield from values(span.attributes)
    for event in span.events:
        yield event.name
        yield from values(event.attributes)


def assert_nowhere(t: Telemetry, secret: str) -> None:
    for span in t.spans():
        for text in span_strings(span):
            assert secret not in text, f"secret in span {span.name!r}: {text!r}"
    for exposition in (generate_latest(t.registry), generate_openmetrics(t.registry)):
        assert secret not in exposition.decode(), "secret in the exposition"


class RequestsLikeError(Exception):
    """A duck-typed `requests` error: `.request.url`, `.response.status_code`, headers."""

    def __init__(self, message: str, url: str, status: int | None) -> None:
        super().__init__(message)
        self.request = type("Request", (), {"url": url, "headers": {}})()
        if status is not None:
            self.response = type(
                "Response", (), {"status_code": status, "url": url, "headers": {}}
            )()


@given(
    credential=credentials(),
    before=context_text,
    after=context_text,
    limit=st.integers(min_value=0, max_value=160),
)
@settings(max_examples=300, deadline=None, database=None)
def test_mask_secrets_never_leaks_a_credential(
    credential: tuple[str, str], before: str, after: str, limit: int
) -> None:
    text, secret = credential
    assume(secret not in before and secret not in after)
    masked = mask_secrets(before + text + after, limit)
    assert secret not in masked
    if (before + text + after).count(secret[:6]) == 1:  # found nowhere but in the secret
        assert secret[:6] not in masked  # not even a prefix survives a cut by the limit
    assert len(masked) <= limit + 1  # the limit plus "…"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Incorrect API key provided: sk-abc123def456", "Incorrect API key provided: sk-***"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ("GET /v1?api_key=abcd1234&x=1", "GET /v1?api_key=***&x=1"),
        ("id_token=abcd1234 client_secret: 'zzzz9999'", "id_token=*** client_secret: '***'"),
        ("\\x85sk-0123456789abcdefghijklmn", "\\x85sk-***"),  # glued by a repr escape
        ("task-manager and the monkey=banana", "task-manager and the monkey=banana"),
        ("req_8f3a2b1c9d0e4f5a", "req_8f3a2b1c9d0e4f5a"),
        # A key prefix glued before a scheme word (found by hypothesis).
        ("pk-Bearer 000090110e3c38b5", "pk-*** ***"),
        ("sk-Basic dXNlcjpwYXNz", "sk-Basic ***"),  # "Basic" is too short for a key
    ],
)
def test_mask_secrets_table(text: str, expected: str) -> None:
    assert mask_secrets(text) == expected


def test_mask_secrets_masks_a_key_cut_by_the_limit() -> None:
    key = "sk-" + "A1b2C3d4" * 6
    for cut in range(len(key) + 2):
        text = "x" * (100 - cut) + " " + key + " tail"
        masked = mask_secrets(text, 101)
        assert "A1b2" not in masked, (cut, masked)


@given(credential=credentials(), before=context_text, after=context_text, data=st.data())
@PROPERTY
def test_no_secret_from_errors_in_traced_scopes(
    telemetry: Telemetry,
    credential: tuple[str, str],
    before: str,
    after: str,
    data: st.DataObject,
) -> None:
    text, secret = credential
    assume(secret not in before and secret not in after)
    telemetry.exporter.clear()
    url = data.draw(urls(secret, text))
    status = data.draw(st.sampled_from([400, 401, 403, 404, 429, 500, 503]))
    errors: list[Callable[[], BaseException]] = [
        lambda: api_error(
            status,
            message=f"{before}{text}{after}",
            param=f"{before}{text}{after}",
            code=text,
            headers={"x-request-id": text},
        ),
        lambda: RequestsLikeError(f"{before}Max retries exceeded, url: {url}{after}", url, status),
        lambda: RequestsLikeError(f"HTTPSConnectionPool: {url}", url, None),
        lambda: ValueError(f"{before}{text}{after}"),
    ]  # fmt: skip
    for make in errors:

        @failsight.traced_generation(name="summarize", model="gpt-4o-mini")
        def call(make: Callable[[], BaseException] = make) -> None:
            handle = failsight.current_generation()
            assert handle is not None
            handle.record_retry("rate_limited", status_code=429)
            raise make()

        with pytest.raises(Exception):  # noqa: B017 - each error passes through unchanged
            call()
        outcome = failsight.classify_exception(make())
        assert outcome.failure_class == "hard"
    assert len(telemetry.spans()) == len(errors)
    assert_nowhere(telemetry, secret)


def _mock_client(handler: Callable[[Any], Any]) -> openai.OpenAI:
    http = sdk_httpx()
    return openai.OpenAI(
        api_key="sk-client-key-0000000000000000000000",
        base_url="http://mock.local/v1",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=http.MockTransport(handler)),
    )


COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                                                                   "content": "ok"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}  # fmt: skip


@given(credential=credentials(), before=context_text, after=context_text, data=st.data())
@PROPERTY
def test_no_secret_from_sdk_calls(
    instrumented: Telemetry,
    credential: tuple[str, str],
    before: str,
    after: str,
    data: st.DataObject,
) -> None:
    """The patch's span path: error bodies, headers and transport errors carrying secrets."""
    text, secret = credential
    assume(secret not in before and secret not in after)
    http = sdk_httpx()
    instrumented.exporter.clear()
    url = data.draw(urls(secret, text))
    status = data.draw(st.sampled_from([400, 401, 404, 422, 429, 500, 502]))
    message = f"{before}{text}{after}"

    def handler(request: Any) -> Any:
        mode = request.headers.get("x-mode")
        if mode == "transport":
            raise http.ConnectError(f"cannot reach {url}: {message}", request=request)
        if mode == "ok":
            return http.Response(200, json=COMPLETION, headers={"x-request-id": text})
        body = {"error": {"message": message, "type": "invalid_request_error",
                          "param": message, "code": text}}  # fmt: skip
        return http.Response(status, json=body, headers={"x-request-id": text})

    client = _mock_client(handler)

    def chat(mode: str) -> Any:
        return client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mode": mode},
        )

    @failsight.traced_generation(name="scoped")
    def scoped(mode: str) -> Any:
        return chat(mode)

    for mode in ("error", "transport", "ok"):
        for fn in (chat, scoped):
            with contextlib.suppress(openai.OpenAIError):
                fn(mode)
    assert instrumented.spans()
    assert_nowhere(instrumented, secret)


def test_shapeless_client_key_never_exported(instrumented: Telemetry) -> None:
    """A key no pattern recognises (a gateway's, a self-hosted server's) is masked because
    the patch remembers the exact key of the client being called."""
    http = sdk_httpx()
    key = f"tenant.{secrets.token_hex(5)}/local"
    assert mask_secrets(f"unknown credential {key}") != "unknown credential ***"

    def handler(request: Any) -> Any:
        if request.headers.get("x-mode") == "transport":
            raise http.ConnectError(f"proxy refused credential {key}", request=request)
        body = {"error": {"message": f"unknown credential {key}", "type": "auth",
                          "param": key, "code": f"bad:{key}"}}  # fmt: skip
        return http.Response(401, json=body, headers={"x-request-id": f"{key}#1"})

    client = openai.OpenAI(
        api_key=key,
        base_url="http://mock.local/v1",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=http.MockTransport(handler)),
    )
    for mode in ("error", "transport"):
        with contextlib.suppress(openai.OpenAIError):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-mode": mode},
            )
    assert len(instrumented.spans()) == 2
    assert_nowhere(instrumented, key)
    assert mask_secrets(f"unknown credential {key}") == "unknown credential ***"


# --------------------------------------------------------------------------- content capture


@pytest.mark.parametrize("capture", [True, False])
def test_captured_content_is_truncated_and_masked(
    instrumented: Telemetry, server: FaultServer, capture: bool
) -> None:
    failsight.configure(
        registry=instrumented.registry,
        tracer_provider=instrumented.provider,
        capture_content=capture,
        max_content_length=40,
    )
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-key-123456", max_retries=0)
    prompt = "sk-proj-" + "Z9" * 20 + " " + "a fox in the snow " * 10
    client.images.generate(
        model="dall-e-3",
        prompt=prompt,
        extra_headers={"X-Failsight-Scenario": "image_revised_prompt"},
    )
    span = instrumented.span("image_generation dall-e-3")
    attributes = dict(span.attributes or {})
    if not capture:
        assert "failsight.image.revised_prompt" not in attributes
        assert not any(prompt[:20] in text for text in span_strings(span))
        return
    captured = attributes["failsight.image.revised_prompt"]
    assert isinstance(captured, str)
    expected = ("A detailed, safe rendering of: sk-*** " + "a fox in the snow " * 10)[:40]
    assert captured == expected + "…"
    assert len(captured) <= 40 + 1
    assert "Z9Z9" not in captured


# --------------------------------------------------------------------------- label values

NASTY_LABELS = [
    'gpt-"4o"',
    "line\nbreak",
    "back\\slash\\",
    'all "three"\\\n',
    "ünïcödé-模型-🚀",
    "tab\tcr\rnul\x00del\x7f",
    "\u2028\u2029",
    "{}=,",
    "lone\udc80surrogate",
]


def _promtool_check(text: str) -> None:
    promtool = require_binary("promtool")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _label_workload(values: list[str]) -> None:
    for value in values:

        @failsight.traced_generation(name=value, model=value, operation="chat")
        def call(value: str = value) -> None:
            handle = failsight.current_generation()
            assert handle is not None
            handle.record_usage(input=1, output=1)
            handle.record_finish_reason("stop")
            handle.mark_failure("silent", value)

        call()


@pytest.mark.needs_prometheus
def test_hostile_label_values_keep_the_exposition_valid(telemetry: Telemetry) -> None:
    _label_workload(NASTY_LABELS)
    text = generate_latest(telemetry.registry).decode()
    _promtool_check(text)
    seen = {
        sample.labels["model"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "genai_requests_total"
    }
    # Every value survives the round trip; the lone surrogate is replaced, not fatal.
    assert seen == {*NASTY_LABELS[:-1], "lone?surrogate"}


@given(values=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=25, unique=True))
@settings(max_examples=8, deadline=None, database=None)
@pytest.mark.needs_prometheus
def test_generated_label_values_pass_promtool(values: list[str]) -> None:
    registry = CollectorRegistry()
    failsight.configure(registry=registry)
    try:
        _label_workload(values)
        _promtool_check(generate_latest(registry).decode())
    finally:
        from failsight import _config

        _config._state = None


@pytest.mark.e2e
def test_label_values_from_sdk_calls_stay_valid(instrumented: Telemetry) -> None:
    http = sdk_httpx()
    client = _mock_client(lambda request: http.Response(200, json=COMPLETION))
    for model in NASTY_LABELS:
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
        except UnicodeEncodeError:  # the SDK cannot send a lone surrogate; it is still counted
            assert "\udc80" in model
    text = generate_latest(instrumented.registry).decode()
    _promtool_check(text)
    assert 'model="lone?surrogate"' in text


# --------------------------------------------------------------------------- binding and TLS


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent for UDP connect
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.mark.e2e
def test_metrics_server_binds_loopback_by_default(telemetry: Telemetry) -> None:
    server, _thread = failsight.start_metrics_server(port=0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200
        other = _non_loopback_address()
        if other is not None:  # the host's own LAN address is not served
            with pytest.raises(OSError), socket.create_connection((other, port), timeout=2):
                pass
    finally:
        server.shutdown()
        server.server_close()


def _openssl(*args: str, cwd: Path) -> None:
    openssl = require_binary("openssl")
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ec_request(cwd: Path, name: str, subject: str) -> None:
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", subject, "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=cwd,
    )  # fmt: skip


def _sign(cwd: Path, name: str, ca: str, extensions: str) -> None:
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "1", "-sha256", "-extfile", f"{name}.ext",
        "-out", f"{name}.pem", cwd=cwd,
    )  # fmt: skip


def _self_signed_ca(cwd: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "1", "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate; a rogue client."""
    cwd = tmp_path_factory.mktemp("pki")
    _self_signed_ca(cwd, "ca")
    _ec_request(cwd, "server", "/CN=127.0.0.1")
    _sign(cwd, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _ec_request(cwd, "client", "/CN=prometheus")
    _sign(cwd, "client", "ca", "extendedKeyUsage=clientAuth\n")
    _self_signed_ca(cwd, "rogue-ca")
    _ec_request(cwd, "rogue", "/CN=rogue")
    _sign(cwd, "rogue", "rogue-ca", "extendedKeyUsage=clientAuth\n")
    return cwd


class TLSPrometheus(PrometheusServer):
    """Real Prometheus scraping one HTTPS target twice: job `failsight` with the client
    certificate, job `nocert` trusting the CA but presenting no certificate."""

    def __init__(self, target: str, pki: Path) -> None:
        super().__init__([target])
        self.pki = pki

    def config(self) -> dict[str, Any]:
        config = super().config()
        job = config["scrape_configs"][0]
        job["scheme"] = "https"
        job["tls_config"] = {
            "ca_file": str(self.pki / "ca.pem"),
            "cert_file": str(self.pki / "client.pem"),
            "key_file": str(self.pki / "client.key"),
        }
        nocert = {
            **job,
            "job_name": "nocert",
            "tls_config": {"ca_file": job["tls_config"]["ca_file"]},
        }
        config["scrape_configs"].append(nocert)
        return config


def _tls_get(url: str, pki: Path, cert: str | None) -> bytes:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert is not None:
        context.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return bytes(response.read())


@pytest.mark.needs_prometheus
@pytest.mark.e2e
def test_mutual_tls_scraped_by_real_prometheus(telemetry: Telemetry, pki: Path) -> None:
    _label_workload(["tls-check"])
    server, _thread = failsight.start_metrics_server(
        port=0,
        certfile=str(pki / "server.pem"),
        keyfile=str(pki / "server.key"),
        client_cafile=str(pki / "ca.pem"),
        client_auth_required=True,
    )
    try:
        port = server.server_address[1]
        url = f"https://127.0.0.1:{port}/metrics"
        assert b'call_site="tls-check"' in _tls_get(url, pki, "client")
        for cert in (None, "rogue"):  # no certificate, or one from another CA: refused
            with pytest.raises(OSError):
                _tls_get(url, pki, cert)
        with pytest.raises(OSError):  # plain HTTP on the TLS port gets nothing
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        with TLSPrometheus(f"127.0.0.1:{port}", pki) as prom:
            up = prom.wait_for("up", lambda r: len(r) == 2, timeout=20)
            by_job = {r["metric"]["job"]: r["value"][1] for r in up}
            assert by_job == {"failsight": "1", "nocert": "0"}, prom.log_tail()
            result = prom.wait_for(
                'genai_requests_total{call_site="tls-check"}', lambda r: len(r) == 1
            )
            assert result[0]["metric"]["job"] == "failsight"  # nothing came through `nocert`
            assert result[0]["metric"]["failure_class"] == "silent"
            assert float(result[0]["value"][1]) == 1.0
    finally:
        server.shutdown()
        server.server_close()
