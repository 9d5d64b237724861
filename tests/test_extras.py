"""A missing optional dependency names the extra that installs it.

Each case runs in a subprocess whose import system cannot find the module
(``sys.modules[name] = None``), as on a machine where it was never installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]


def without(modules: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    blocker = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run(
        [sys.executable, "-c", blocker + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


CATCH = """
try:
    {statement}
except ImportError as exc:
    print(exc.name)
    print(exc)
    print(exc.__cause__ is None and exc.__suppress_context__)
else:
    raise SystemExit("no ImportError")
"""


@pytest.mark.parametrize(
    ("missing", "statement", "extra"),
    [
        (("openai",), "import failsight; failsight.instrument_openai()", "openai"),
        (("aiohttp",), "from failsight.testing import FaultServer", "testing"),
        # The server half of the testing extra is what is reported, with openai gone too.
        (("aiohttp", "openai"), "from failsight.testing import FaultServer", "testing"),
    ],
)
def test_missing_extra_names_the_pip_command(
    missing: tuple[str, ...], statement: str, extra: str
) -> None:
    result = without(missing, CATCH.format(statement=statement))
    assert result.returncode == 0, result.stdout + result.stderr
    name, message, suppressed = result.stdout.strip().splitlines()
    assert name == missing[0]
    assert f"pip install 'failsight[{extra}]'" in message
    assert missing[0] in message  # which module was missing, too
    assert suppressed == "True"  # one error, not "During handling ... another exception"


def test_uncaught_the_last_line_says_what_to_install() -> None:
    result = without(("openai",), "import failsight\nfailsight.instrument_openai()\n")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and "pip install 'failsight[openai]'" in last
    assert "During handling" not in result.stderr


def test_the_core_imports_without_any_extra() -> None:
    result = without(
        ("openai", "aiohttp", "httpx"),
        "import failsight, failsight.exposition, failsight.validators; print('ok')",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_demo_without_its_extra_is_one_line() -> None:
    result = without(
        ("aiohttp",), "from failsight.cli import main\nraise SystemExit(main(['demo']))"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "failsight: error: the demo needs 'pip install failsight[demo]' (aiohttp missing)"
    )


def _installing_section() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^## Installing\n(.*?)^## ", readme, re.M | re.S)
    assert match, "README.md has no '## Installing' section"
    return match.group(1)


@pytest.mark.parametrize("extra", ["openai", "testing", "demo"])
def test_readme_lists_the_extra(extra: str) -> None:
    assert f"pip install 'failsight[{extra}]'" in _installing_section()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(rf"^{extra} = \[", pyproject, re.M), f"no extra {extra!r} in pyproject"
