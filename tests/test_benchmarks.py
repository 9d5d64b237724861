"""The benchmark scripts run as a user runs them, and the contract floor records what
docs/reference.md asks of a chat call.

No figure is asserted: only that each script runs to the end and prints every figure. The
official OpenTelemetry instrumentations run from their own venvs (`make bench-venvs`, which
`make test` builds); without them their modes are skipped, with a warning, except under CI.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

import pytest

import failsight
from conftest import Telemetry
from failsight.testing import completion_body, mock_openai_client

pytestmark = pytest.mark.e2e

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
NUMBER = r"-?\d+(\.\d+)?"
FIGURE = r"-?[\d,]+(\.\d+)?"  # 1,234,000 or 12.5


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
    # Its dataclasses look their module up by name while the class is made.
    monkeypatch.setitem(sys.modules, "overhead", module)
    spec.loader.exec_module(module)
    return module


OFFICIAL = ("openai-v2", "genai-openai")  # the official instrumentations' modes


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def rows(out: str) -> dict[tuple[str, str], str]:
    """The table's rows by (group, label): the cells after the label, as printed."""
    found, group = {}, ""
    for line in out.splitlines():
        if line.startswith("| **"):
            group = line.split("**")[1]
        elif line.startswith("| ") and not line.startswith("| mode"):
            label, *cells = (cell.strip() for cell in line.strip("|").split(" | "))
            found[(group, label)] = " | ".join(cells)
    return found


def check_table(out: str, unit: str) -> list[str]:
    """Every row of failsight and the floors, in both groups; the official modes that were
    skipped (each either a row or a `skipped` line)."""
    table = rows(out)
    number = FIGURE + unit
    for group in ("spans recorded", "spans sampled out (ALWAYS_OFF)"):
        for label in (
            "bare span + 3 counters + 1 histogram (floor)",
            "failsight",
            "failsight inside `@traced_generation`",
        ):
            plain, stream, chunk = table[(group, label)].split(" | ")
            for cell in (plain, stream, chunk):
                assert re.match(number, cell), (group, label, cell, out)
        contract = table[(group, "the contract by hand, no classifier or guards (contract floor)")]
        assert re.match(rf"{number} \| — \| —$", contract), (contract, out)
    skipped = []
    for mode in OFFICIAL:
        labels = [label for _, label in table if f"instrumentation-{mode}`" in label]
        if re.search(rf"^skipped {mode}: ", out, re.MULTILINE):
            assert not labels, out
            skipped.append(mode)
        else:
            assert len(labels) == 2, (mode, out)  # recorded and sampled out
    return skipped


def say_skipped(skipped: list[str], out: str) -> None:
    """Without their venvs the official modes are skipped: fine here, a failure under CI."""
    if not skipped:
        return
    reasons = [line for line in out.splitlines() if line.startswith("skipped ")]
    if in_ci():
        pytest.fail(f"CI is set, so `make test` builds the bench venvs: {reasons}")
    warnings.warn(
        f"official instrumentation modes skipped (make bench-venvs): {reasons}", stacklevel=2
    )


def test_overhead_compares_every_mode() -> None:
    """The comparison, small and timed: each mode in its own process, two at a time."""
    out = run("overhead.py", "--rounds", "1", "--calls", "4", "--jobs", "2")
    say_skipped(check_table(out, " µs"), out)
    assert re.search(rf"The bare SDK call: {NUMBER} µs plain, {NUMBER} µs streamed", out), out
    non_ai = rf"instrument_http on a non-AI request \(GET /v1/models\): requests {NUMBER} µs"
    assert re.search(non_ai, out), out


def test_overhead_counts_instructions() -> None:
    """The same under callgrind, for failsight and one official instrumentation."""
    modes = "failsight,failsight-off,openai-v2"
    out = run("overhead.py", "--instructions", "--rounds", "1", "--calls", "2", "--modes", modes)
    table = rows(out)
    for group in ("spans recorded", "spans sampled out (ALWAYS_OFF)"):
        plain, _, chunk = table[(group, "failsight")].split(" | ")
        assert re.match(r"-?[\d,]+( \(.*\))?$", plain), (plain, out)
        assert re.match(r"-?[\d,]+", chunk), (chunk, out)
    if "skipped openai-v2" in out:
        say_skipped(["openai-v2"], out)
    else:
        assert re.search(r"\(-?[\d.]+× openai-v2\)", table[("spans recorded", "failsight")]), out


def test_overhead_profiles_a_mode() -> None:
    """`--profile` names the Python functions where failsight's instructions go."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        if in_ci():
            pytest.fail("CI is set: --profile needs a C compiler (cc or gcc)")
        pytest.skip("--profile needs a C compiler (cc or gcc)")
    out = run("overhead.py", "--profile", "--calls", "2", "--top", "5", "--modes", "failsight")
    assert "== failsight: failsight, spans recorded" in out, out
    for what in ("plain call", "20-chunk stream"):
        assert re.search(rf"{what}: [\d,]+ instructions a call above the bare SDK", out), out
    # The wrapper failsight puts on `create`, by its Python name and file.
    assert re.search(r"[\d,]+  \S*wrapper \(failsight/_sdk_patch\.py:\d+\)", out), out


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
    """The comparison is fair: the contract floor's span carries what failsight's does
    (failsight as the benchmark runs it: without the optional pricing)."""
    overhead = load_overhead(monkeypatch)
    failsight.configure(registry=telemetry.registry, tracer_provider=telemetry.provider,
                        prices=False)  # fmt: skip
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
    # failsight also records the provider's request id of an answer; the floor leaves it out.
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
