"""The benchmark scripts run as a user runs them, and the contract floor does the SPEC's work.

No figure is asserted: only that each script runs to the end and prints every figure.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import failsight
from conftest import Telemetry
from failsight.testing import completion_body, mock_openai_client

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
NUMBER = r"-?\d+(\.\d+)?"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def load_overhead(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `python benchmarks/overhead.py` has it
    spec = importlib.util.spec_from_file_location("overhead", BENCHMARKS / "overhead.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overhead_prints_every_figure() -> None:
    out = run("overhead.py", "--rounds", "1", "--calls", "4", "--chunks", "6")
    for label in (
        "unpatched SDK call",
        "floor added per call",
        "contract floor added per call",
        "failsight added per call",
        "failsight beyond the floor per chunk",
        "contract floor per call",
        "failsight per chunk",
    ):
        assert re.search(rf"{label}\s+{NUMBER} us", out), (label, out)
    assert re.search(rf"{NUMBER}x the contract floor\)", out), out


def test_overhead_rejects_a_stream_no_longer_than_the_short_one() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "overhead.py"), "--chunks", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2 and "--chunks must be more than 5" in done.stderr


def test_http_overhead_prints_every_figure() -> None:
    out = run("http_overhead.py", "--rounds", "2", "--calls", "4")
    for library in ("requests", "httpx"):
        for request in ("GET /v1/models", "POST /v1/chat/completions"):
            row = rf"{library}\s+{request}\s+{NUMBER}us\s+{NUMBER}us\s+[+-]{NUMBER}us"
            assert re.search(row, out), (library, request, out)
    assert re.search(r"route check on a non-matching path: \d+ ns", out), out


def test_soak_prints_memory_and_series() -> None:
    out = run("soak.py", "--calls", "400", "--models", "20", "--sites", "10", "--cap", "5")
    assert re.search(rf"RSS at end\s+{NUMBER} MiB", out), out
    assert re.search(r"Prometheus series: [\d,]+ in all", out), out


def test_contract_floor_sets_the_span_attributes_failsight_sets(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison is fair: the contract floor's span carries what failsight's does."""
    overhead = load_overhead(monkeypatch)
    client = mock_openai_client(lambda request: completion_body(), base_url="http://bench.local/v1")
    contract = overhead.ContractFloor(telemetry.provider)
    contract.on()
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    finally:
        contract.off()
    failsight.instrument_openai()
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    finally:
        failsight.uninstrument_openai()
    theirs, ours = (dict(span.attributes or {}) for span in telemetry.spans())
    # failsight also records the provider's request id, which the SPEC asks for errors only.
    ours.pop("failsight.request_id", None)
    assert theirs == ours


SEGMENTS = """
import sys
sys.path.insert(0, {folder!r})
import callgrind

if "--segments" in sys.argv:
    total = 0
    for n in (1_000, 10_000):
        callgrind.mark(f"loop/{{n}}")
        for i in range(n):
            total += i
    callgrind.done()
"""


def test_callgrind_counts_each_segment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import callgrind

    script = tmp_path / "segments.py"
    script.write_text(SEGMENTS.format(folder=str(BENCHMARKS)))
    (small_label, small), (large_label, large) = callgrind.count(str(script), [])
    assert (small_label, large_label) == ("loop/1000", "loop/10000")
    # Ten times the loop: about ten times the instructions, the marks' own cost aside.
    assert small > 0
    assert 9 < large / small < 11, (small, large)


def test_callgrind_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import callgrind

    monkeypatch.setattr(callgrind.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="needs valgrind"):
        callgrind.count("unused.py", [])
