"""`failsight doctor` as a deploy gate against endpoints that misbehave on purpose.

Each run is the real command in a child process (as CI runs it), against a small threaded HTTP
server on a loopback socket: an endless body, a slow drip, a huge body, a gzip bomb,
redirects (to another port, or to itself), lone surrogates and escape sequences in an error,
a key echoed back. Every run is bounded in wall time by the doctor's own deadline plus a
margin, its exit status is the gate's answer (0 ok, 1 warnings only, 2 failures), nothing
prints a traceback, and neither the screen nor `--json` shows the key.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytestmark = pytest.mark.e2e  # loopback sockets and child processes

SHORT = 4.0  # --deadline of the runs that hit it (start-up imports count in it too)
DEADLINE = 20.0  # --deadline of the runs that should end well before it
MARGIN = 8.0  # interpreter start-up and the last request's grace, generously
KEY = "sk-hostile-test-key-abcdefghij0123"
SHORT_KEY = "sk-1234"  # LiteLLM's documented example key
TAB_KEY = "sk-LEFTHALFxq\tRIGHTHALFzw"
MIB = 1 << 20

Route = Callable[["Handler"], None]


class Hostile(ThreadingHTTPServer):
    """An OpenAI-shaped endpoint whose routes can be swapped for hostile ones."""

    daemon_threads = True

    def __init__(self, routes: dict[tuple[str, str], Route] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes = routes or {}
        self.hits: Counter[tuple[str, str]] = Counter()
        self.sent: Counter[tuple[str, str]] = Counter()  # body bytes written, by route
        self.closing = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a connection the doctor dropped mid-answer: what the tests ask of it


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Hostile

    def log_message(self, *args: Any) -> None:
        pass

    def serve(self) -> None:
        sent = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.sent_json = json.loads(sent) if sent else {}
        self.route = (self.command, self.path.split("?")[0].removeprefix("/v1"))
        self.server.hits[self.route] += 1
        answer = self.server.routes.get(self.route) or _DEFAULTS.get(self.route) or _not_found
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            answer(self)  # broken off: the doctor stopped reading, as it should

    do_GET = do_POST = serve

    def answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        headers.setdefault("content-type", "application/json")
        for name, value in {**headers, "content-length": str(len(body))}.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.write(body)

    def write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        self.server.sent[self.route] += len(data)

    def chunked(self, every_s: float, chunk: bytes) -> None:
        """200, then `chunk` every `every_s` for ever (until the client leaves)."""
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        while not self.server.closing.wait(every_s):
            self.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def key(self) -> str:
        return (self.headers.get("authorization") or "")[7:]


def _json(status: int, body: Any, **headers: str) -> Route:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda h: h.answer(status, raw, **headers)


def _chat(h: Handler) -> None:
    """A chat answer that honours max_tokens=1, as a real endpoint does."""
    cut = h.sent_json.get("max_tokens") == 1
    h.answer(200, json.dumps({**_CHAT, "choices": [_CUT]} if cut else _CHAT).encode())


_CUT = {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "1"}}
_CHAT = {
    "id": "c1", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}  # fmt: skip
_DEFAULTS: dict[tuple[str, str], Route] = {
    ("GET", "/models"): _json(200, {"object": "list", "data": [{"id": "gpt-4o-mini"}]}),
    ("POST", "/chat/completions"): _chat,
    # A job that never leaves `queued`, and asks to be polled again at once.
    ("POST", "/videos"): _json(200, {"id": "vid_1", "status": "queued"}, openai_poll_after_ms="0"),
    ("GET", "/videos/vid_1"): _json(200, {"id": "vid_1", "status": "queued"}),
}
_not_found = _json(404, {"error": {"message": "no route", "code": "not_found"}})


@pytest.fixture
def hostile() -> Iterator[Callable[..., Hostile]]:
    started: list[Hostile] = []

    def start(routes: dict[tuple[str, str], Route] | None = None) -> Hostile:
        server = Hostile(routes)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.closing.set()
        server.shutdown()
        server.server_close()


# The command as a deploy gate runs it, reporting its own peak memory afterwards.
_LAUNCHER = (
    "import resource, sys\n"
    "from failsight import cli\n"
    "status = cli.main(sys.argv[1:])\n"
    "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(status)\n"
)


@dataclass
class Run:
    status: int
    out: str
    err: str
    seconds: float
    maxrss_mb: float

    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.out)
        return parsed


def doctor(
    base_url: str, *args: str, key: str = KEY, deadline: float | None = DEADLINE, **env: str
) -> Run:
    """`failsight doctor` in a child process; asserts its wall time and a clean stderr."""
    environment = {**os.environ, "DOCTOR_TEST_KEY": key, **env}
    environment.pop("OPENAI_BASE_URL", None)
    command = [sys.executable, "-c", _LAUNCHER, "doctor", "--base-url", base_url,
               "--api-key-env", "DOCTOR_TEST_KEY", "--yes", *args]  # fmt: skip
    if deadline is not None:
        command += ["--deadline", str(deadline)]
    started = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, env=environment, timeout=(deadline or 30) + 30
    )
    seconds = time.monotonic() - started
    out = done.stdout.decode("utf-8")  # strict: what the doctor prints is valid UTF-8
    err = done.stderr.decode("utf-8", errors="replace")
    assert "Traceback" not in err, err
    maxrss = [line for line in err.splitlines() if line.startswith("maxrss_kb ")]
    if deadline is not None:
        assert seconds < deadline + MARGIN, (seconds, out, err)
    return Run(done.returncode, out, err, seconds, int(maxrss[0].split()[1]) / 1024)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _check(run: Run, cid: str) -> dict[str, Any]:
    return next(c for c in run.document()["checks"] if c["id"] == cid)


@pytest.fixture(scope="module")
def baseline_mb() -> float:
    """Peak memory of a run against a healthy endpoint."""
    server = Hostile()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run = doctor(server.base_url, "--only", "text")
        assert run.status == 0, run.out
        return run.maxrss_mb
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------- bodies without end


@pytest.mark.parametrize(
    ("name", "every_s", "chunk"),
    [("endless", 0.1, b" " * 65536), ("drip", 2.0, b" ")],
)
def test_a_body_that_never_ends_is_cut_at_the_deadline(
    hostile: Callable[..., Hostile], baseline_mb: float, name: str, every_s: float, chunk: bytes
) -> None:
    server = hostile({("GET", "/models"): lambda h: h.chunked(every_s, chunk)})
    run = doctor(server.base_url, "--only", "text", deadline=SHORT)
    assert run.status == 2, run.out
    assert run.out.splitlines()[0].endswith(f"(at most {SHORT:g} s)")
    models = next(line for line in run.out.splitlines() if "text.models" in line)
    assert models.startswith("FAIL") and "still arriving after" in models, run.out
    assert "the doctor's deadline" in models
    # The deadline is spent: the chat call is not sent, and says why.
    assert f"not sent: the doctor's {SHORT:g} s deadline had passed" in run.out
    assert ("POST", "/chat/completions") not in server.hits
    assert run.maxrss_mb < baseline_mb + 64, (run.maxrss_mb, baseline_mb)
    document = doctor(server.base_url, "--only", "text", "--json", deadline=SHORT).document()
    assert document["exit_status"] == 2 and document["deadline_s"] == SHORT


def test_a_drip_on_the_chat_call_fails_it_instead_of_passing(
    hostile: Callable[..., Hostile],
) -> None:
    server = hostile({("POST", "/chat/completions"): lambda h: h.chunked(2.0, b" ")})
    run = doctor(server.base_url, "--only", "text", "--json", deadline=SHORT)
    assert run.status == 2
    chat = _check(run, "text.chat")
    assert chat["verdict"] == "fail" and "still arriving" in chat["finding"], chat
    assert "overall deadline" in chat["fix"]


# ---------------------------------------------------------------------- bodies too large


def _huge(h: Handler) -> None:
    size = 64 * MIB
    h.send_response(200)
    h.send_header("content-type", "application/json")
    h.send_header("content-length", str(size))
    h.end_headers()
    block = b" " * MIB
    for _ in range(size // MIB):
        h.write(block)


def _bomb(h: Handler) -> None:
    """128 MiB of zeros, gzipped to about 130 KB (built a block at a time, on first use)."""
    if not _BOMB:
        pack = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        block = b"\0" * MIB
        _BOMB.append(b"".join(pack.compress(block) for _ in range(128)) + pack.flush())
    h.answer(200, _BOMB[0], content_encoding="gzip")


_BOMB: list[bytes] = []


@pytest.mark.parametrize("route", [_huge, _bomb], ids=["64 MiB body", "gzip bomb of 128 MiB"])
def test_a_huge_body_is_cut_at_the_cap(
    hostile: Callable[..., Hostile], baseline_mb: float, route: Route
) -> None:
    server = hostile({("GET", "/models"): route})
    run = doctor(server.base_url, "--only", "text", "--json")
    assert run.status == 2
    models = _check(run, "text.models")
    assert models["verdict"] == "fail" and "passed 8 MiB" in models["finding"], models
    assert models["fix"]
    assert server.sent[("GET", "/models")] < 64 * MIB or route is not _huge
    assert run.maxrss_mb < baseline_mb + 64, (run.maxrss_mb, baseline_mb)
    assert _check(run, "text.chat")["verdict"] == "ok"  # the rest of the run went on


# ---------------------------------------------------------------------- redirects


def test_a_redirect_to_another_port_is_not_followed(hostile: Callable[..., Hostile]) -> None:
    elsewhere = hostile()
    to = elsewhere.base_url
    server = hostile({
        ("GET", "/models"): _json(307, b"", location=f"{to}/models"),
        ("POST", "/chat/completions"): _json(307, b"", location=f"{to}/chat/completions"),
    })  # fmt: skip
    run = doctor(server.base_url, "--only", "text", "--json")
    assert run.status == 2
    chat = _check(run, "text.chat")
    assert chat["verdict"] == "fail" and f"redirect (fix the request): to {to}" in chat["finding"]
    assert "the key was sent nowhere else" in chat["fix"]
    assert not elsewhere.hits  # the key never left for the other port


def test_a_redirect_loop_is_one_request(hostile: Callable[..., Hostile]) -> None:
    server = hostile()
    server.routes[("GET", "/models")] = _json(302, b"", location=f"{server.base_url}/models")
    run = doctor(server.base_url, "--only", "text")
    assert run.status == 2
    assert server.hits[("GET", "/models")] == 1


# ---------------------------------------------------------------------- what is printed


_SURROGATE = b'{"error": {"message": "denied \\ud800 \\u001b[2J\\u202e", "code": "forbidden"}}'


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_lone_surrogates_and_escapes_in_an_error_are_spelled_out(
    hostile: Callable[..., Hostile], encoding: str
) -> None:
    server = hostile({
        ("GET", "/models"): _json(403, _SURROGATE),
        ("POST", "/chat/completions"): _json(403, _SURROGATE),
    })  # fmt: skip
    run = doctor(server.base_url, "--only", "text", PYTHONIOENCODING=encoding)
    assert run.status == 2, run.err  # a failure, not 1 ("warnings only") from a crash
    accepted = next(line for line in run.out.splitlines() if "key.accepted" in line)
    assert accepted.startswith("FAIL") and "denied \\ud800 \\x1b[2J\\u202e" in accepted
    assert "\x1b" not in run.out and "\u202e" not in run.out
    document = doctor(server.base_url, "--only", "text", "--json").document()
    assert any("denied \\ud800" in text for text in _strings(document))


@pytest.mark.parametrize("key", [SHORT_KEY, TAB_KEY], ids=["short key", "key with a tab"])
def test_an_echoed_key_is_masked_whatever_its_length_or_spelling(
    hostile: Callable[..., Hostile], key: str
) -> None:
    def refuse(h: Handler) -> None:
        said = {"error": {"message": f"Incorrect API key provided: {h.key()}. See the docs.",
                          "code": "invalid_api_key", "param": h.key()}}  # fmt: skip
        h.answer(401, json.dumps(said).encode(), x_ratelimit_limit_requests=h.key())

    server = hostile({("GET", "/models"): refuse, ("POST", "/chat/completions"): refuse})
    text = doctor(server.base_url, "--only", "text", key=key)
    as_json = doctor(server.base_url, "--only", "text", "--json", key=key)
    assert text.status == as_json.status == 2
    assert "Incorrect API key provided: ***. See the docs." in text.out
    pieces = [key, *key.split("\t"), " ".join(key.split())]
    for shown in (text.out, as_json.out, *_strings(as_json.document())):
        assert not any(piece in shown for piece in pieces), shown
    assert server.hits[("GET", "/models")] == 2  # the key did reach the server each time


# ---------------------------------------------------------------------- polling and durations


def test_poll_after_zero_is_floored(hostile: Callable[..., Hostile]) -> None:
    server = hostile()
    run = doctor(server.base_url, "--only", "video", "--video-model", "sora-2",
                 "--video-wait", "2", deadline=None)  # fmt: skip
    assert run.status == 2  # stuck in queued
    assert run.seconds < 2 + MARGIN
    assert 1 <= server.hits[("GET", "/videos/vid_1")] <= 2 / 0.5 + 1, server.hits


@pytest.mark.parametrize(
    "option",
    [
        ("--video-wait", "nan"),
        ("--video-wait", "inf"),
        ("--video-wait", "0"),
        ("--video-wait", "-1"),
        ("--deadline", "nan"),
        ("--deadline", "0"),
    ],
)
def test_a_duration_that_never_ends_is_refused_before_sending(
    hostile: Callable[..., Hostile], option: tuple[str, str]
) -> None:
    server = hostile()
    run = doctor(server.base_url, "--video-model", "sora-2", *option, deadline=None)
    assert run.status == 2
    assert f"argument {option[0]}: must be a finite number of seconds above 0" in run.err
    assert run.seconds < 3 * MARGIN  # an interpreter's start on a busy machine, no request
    assert not server.hits


def test_a_reader_that_leaves_is_no_internal_error(hostile: Callable[..., Hostile]) -> None:
    """`failsight doctor | head -1`: the closed pipe is the shell's 141, not "the doctor broke"."""
    server = hostile()
    environment = {**os.environ, "DOCTOR_TEST_KEY": KEY}
    command = [sys.executable, "-m", "failsight.cli", "doctor", "--base-url", server.base_url,
               "--api-key-env", "DOCTOR_TEST_KEY", "--yes", "--only", "text"]  # fmt: skip
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the reader is gone before the doctor prints
    err = child.stderr.read().decode()
    assert child.wait(timeout=DEADLINE + MARGIN) == 141, err
    assert "Traceback" not in err and "broke" not in err
