"""What a pip user gets: the sdist and wheel built here, the wheel installed into a fresh venv,
and `failsight assets DIR` run from it, checked with promtool.

The distributions are built with hatchling's PEP 517 hooks (what `python -m build` calls) in a
throwaway venv: the sdist from a copy of the checkout with test and tool caches planted in it,
the wheel from that unpacked sdist, as `python -m build` does.
"""

from __future__ import annotations

import ast
import email
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import venv
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from failsight import _assets, cli
from prom_harness import REPO, require_binary, run_promtool

pytestmark = pytest.mark.e2e

# The files the wheel must carry as failsight/assets/, by path relative to the checkout.
SHIPPED = sorted(
    str(path.relative_to(REPO))
    for name in _assets.ASSET_NAMES
    for path in ([REPO / name] if (REPO / name).is_file() else (REPO / name).rglob("*"))
    if path.is_file() and "__pycache__" not in path.parts
)
# Directory names and suffixes that tools leave in a checkout and no sdist may carry.
CACHE_DIRS = {
    ".hypothesis",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".benchmarks",
    "__pycache__",
    "node_modules",
    "htmlcov",
    ".test-prometheus",
}
PLANTED = (
    ".hypothesis/examples/0a1b2c/3d4e5f",
    ".hypothesis/unicode_data/14.0.0/charmap.json.gz",
    ".pytest_cache/v/cache/lastfailed",
    ".mypy_cache/3.11/failsight/cli.data.json",
    ".ruff_cache/0.4.0/123456",
    ".benchmarks/Linux-CPython-3.11-64bit/0001_run.json",
    ".coverage",
    "src/failsight/__pycache__/cli.cpython-311.pyc",
    "tests/__pycache__/test_cli.cpython-311-pytest-8.0.0.pyc",
    "tests/grafana_schema/node_modules/@grafana/schema/package.json",
    ".test-prometheus/wal/00000000",
)


def pip_install(python: Path, *args: str) -> None:
    """`pip install` into the environment of `python`, run by this venv's pip (`--python`)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def fresh_venv(path: Path, base_python: str | None = None) -> Path:
    """A new venv without pip (this venv's pip installs into it); returns its python."""
    if base_python is None:
        venv.EnvBuilder(with_pip=False, clear=True).create(path)
    else:
        subprocess.run(
            [base_python, "-m", "venv", "--without-pip", "--clear", str(path)],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return path / "bin" / "python"


def clean_env() -> dict[str, str]:
    """The environment of a user's shell: nothing pointing into this checkout or venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.pop("FAILSIGHT_RAISE_INTERNAL_ERRORS", None)
    return env


@dataclass(frozen=True)
class Distributions:
    sdist: Path
    wheel: Path
    seconds: float


def _build_requires() -> list[str]:
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r"^\[build-system\]\s*\nrequires\s*=\s*(\[.*?\])", text, re.M | re.S)
    assert match, "no [build-system] requires in pyproject.toml"
    requires = ast.literal_eval(match.group(1))
    assert isinstance(requires, list)
    return [str(item) for item in requires]


def _copy_checkout(dest: Path) -> None:
    """The checkout without VCS, venvs and real caches; small fake caches planted instead."""
    top_ignored = {".git", *CACHE_DIRS}

    def ignore(directory: str, names: list[str]) -> set[str]:
        if Path(directory) == REPO:
            return {n for n in names if n in top_ignored or n.startswith((".venv", ".coverage"))}
        return {n for n in names if n in CACHE_DIRS}

    shutil.copytree(REPO, dest, ignore=ignore)
    for relative in PLANTED:
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        (dest / relative).write_bytes(b"cache")


_built: dict[str, Distributions] = {}


def build_distributions(workdir: Path) -> Distributions:
    """Build the sdist (from a copy of the checkout with caches planted) and the wheel (from
    the unpacked sdist), once per session; `workdir` is used on the first call."""
    if "dists" in _built:
        return _built["dists"]
    started = time.perf_counter()
    builder = fresh_venv(workdir / "build-env")
    pip_install(builder, "--no-compile", *_build_requires())
    source = workdir / "checkout"
    _copy_checkout(source)
    out = workdir / "dist"
    out.mkdir()

    def hook(name: str, cwd: Path) -> Path:
        code = f"from hatchling.build import {name}; print({name}({str(out)!r}))"
        result = subprocess.run(
            [str(builder), "-c", code],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_env(),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return out / result.stdout.strip().splitlines()[-1]

    sdist = hook("build_sdist", source)
    unpacked = workdir / "unpacked"
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(unpacked, filter="data")
        else:  # pragma: no cover - Python before the tarfile filters
            archive.extractall(unpacked)
    (root,) = unpacked.iterdir()
    wheel = hook("build_wheel", root)
    _built["dists"] = Distributions(sdist, wheel, time.perf_counter() - started)
    return _built["dists"]


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Distributions:
    return build_distributions(tmp_path_factory.mktemp("dists"))


# --------------------------------------------------------------------------------------
# The sdist and the wheel


def test_sdist_carries_no_caches(dists: Distributions) -> None:
    with tarfile.open(dists.sdist) as archive:
        members = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    cached = [
        name
        for name in members
        if CACHE_DIRS.intersection(name.split("/"))
        or name.split("/")[0].startswith((".venv", ".coverage"))
        or name.endswith((".pyc", ".pyo"))
    ]
    assert not cached, f"the sdist carries caches: {cached}"
    # What the wheel is built from is all there.
    for needed in [*SHIPPED, "pyproject.toml", "src/failsight/_bootstrap/sitecustomize.py"]:
        assert needed in members, needed


def test_wheel_ships_the_assets_and_project_urls(dists: Distributions) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
        for relative in SHIPPED:
            packaged = f"failsight/assets/{relative}"
            assert packaged in names, packaged
            assert wheel.read(packaged) == (REPO / relative).read_bytes(), relative
        assert "failsight/_bootstrap/sitecustomize.py" in names
        # The vocabulary both packages read: the package cannot import without it.
        for data in ("vocabulary.json", "vocabulary.schema.json"):
            assert wheel.read(f"failsight/{data}") == (REPO / "src/failsight" / data).read_bytes()
        (metadata_name,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(wheel.read(metadata_name))
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert set(urls) >= {"Homepage", "Documentation", "Source", "Issues"}, urls
    assert all(url.startswith("https://") for url in urls.values()), urls


# --------------------------------------------------------------------------------------
# The wheel installed into a fresh venv: `failsight assets DIR`, then promtool


def promtool_checks(rules_dir: Path) -> None:
    require_binary("promtool")
    rule_files = sorted(rules_dir.glob("failsight-*.yml"))
    unit_tests = sorted((rules_dir / "tests").glob("*.yml"))
    assert len(rule_files) == 3 and unit_tests  # recording, alerts, the SLO rules
    check = run_promtool("check", "rules", "--lint=all", "--lint-fatal", *map(str, rule_files))
    assert check.returncode == 0, check.stdout + check.stderr
    with ThreadPoolExecutor(max_workers=len(unit_tests)) as pool:
        results = list(pool.map(lambda p: run_promtool("test", "rules", str(p)), unit_tests))
    failed = [
        r.stdout + r.stderr for r in results if r.returncode != 0 or "SUCCESS" not in r.stdout
    ]
    assert not failed, "\n".join(failed)


@pytest.fixture(scope="module")
def installed(dists: Distributions, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel (and its dependencies) installed; its bin dir."""
    python = fresh_venv(tmp_path_factory.mktemp("user") / "venv")
    pip_install(python, "--no-compile", str(dists.wheel))
    return python.parent


def run_installed(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )


def test_installed_wheel_writes_assets_that_promtool_accepts(
    installed: Path, tmp_path: Path
) -> None:
    where = run_installed(
        installed, "python", "-c", "import failsight; print(failsight.__file__)", cwd=tmp_path
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout

    out = tmp_path / "failsight-assets"
    result = run_installed(installed, "failsight", "assets", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == SHIPPED
    for relative in SHIPPED:
        assert (out / relative).read_bytes() == (REPO / relative).read_bytes(), relative
    promtool_checks(out / "dashboards" / "rules")


def test_installed_wheel_writes_assets_under_a_namespace(installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "assets"
    result = run_installed(
        installed, "failsight", "assets", str(out), "--namespace", "myapp", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    texts = {p: p.read_text() for p in out.rglob("*") if p.is_file()}
    assert not [p for p, t in texts.items() if re.search(r"\bgenai[_:]", t)]
    rules = (out / "dashboards/rules/failsight-recording.yml").read_text()
    assert "myapp_requests_total" in rules and "record: myapp:requests:rate5m" in rules
    for dashboard in (out / "dashboards").glob("*.json"):
        json.loads(dashboard.read_text())
    promtool_checks(out / "dashboards" / "rules")


# --------------------------------------------------------------------------------------
# The command itself, from the source tree


def assets(*args: str) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "failsight", "assets", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return result.returncode, result.stdout, result.stderr


def test_assets_from_the_checkout_are_the_repository_files(tmp_path: Path) -> None:
    written = _assets.write_assets(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == SHIPPED
    assert all((tmp_path / r).read_bytes() == (REPO / r).read_bytes() for r in SHIPPED)


def test_assets_refuses_to_overwrite_changed_files(tmp_path: Path) -> None:
    assert assets(str(tmp_path))[0] == 0
    assert assets(str(tmp_path))[0] == 0  # the same files again: nothing to refuse
    alerts = tmp_path / "dashboards/rules/failsight-alerts.yml"
    alerts.write_text("# my edits\n")
    status, _, err = assets(str(tmp_path), "--namespace", "myapp")
    assert status == 1 and err.startswith("failsight: error: ") and "--force" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert alerts.read_text() == "# my edits\n"  # nothing written
    assert "myapp" not in (tmp_path / "dashboards/rules/failsight-recording.yml").read_text()
    status, _, err = assets(str(tmp_path), "--namespace", "myapp", "--force")
    assert status == 0, err
    assert "myapp_failures_total" in alerts.read_text()


@pytest.mark.parametrize("namespace", ["1abc", "my-app", "", "a b"])
def test_assets_rejects_a_bad_namespace(tmp_path: Path, namespace: str) -> None:
    status, _, err = assets(str(tmp_path), "--namespace", namespace)
    assert status == 2 and err.startswith("failsight: error: --namespace")
    assert not any(tmp_path.iterdir())


def test_assets_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, _, err = assets(str(blocker / "sub"))
    assert status == 1 and err.startswith("failsight: error: cannot write")
    assert len(err.strip().splitlines()) == 1
    status, _, err = assets(str(blocker))
    assert (status, err) == (1, f"failsight: error: not a directory: {blocker}\n")


def test_rewrite_touches_metric_names_only() -> None:
    text = (
        'sum(rate(genai_requests_total{job="genai"}[5m])) / genai:requests:rate5m '
        "# GenAIRetryStorm gen_ai.request.model mygenai_x"
    )
    assert _assets.rewrite_namespace(text, "acme") == (
        'sum(rate(acme_requests_total{job="genai"}[5m])) / acme:requests:rate5m '
        "# GenAIRetryStorm gen_ai.request.model mygenai_x"
    )


def test_assets_is_in_the_help() -> None:
    assert "assets" in cli.build_parser().format_help()


# --------------------------------------------------------------------------------------
# Links inside DIR: nothing is ever written outside it


def _outside(tmp_path: Path) -> tuple[Path, Path]:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    return out, elsewhere


def _one_line_refusal(status: int, err: str, *texts: str) -> None:
    assert status == 1 and err.startswith("failsight: error: "), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert all(text in err for text in texts), err


def test_assets_refuses_a_dangling_link_inside_dir(tmp_path: Path) -> None:
    out, elsewhere = _outside(tmp_path)
    link = out / "otel-collector.yaml"
    link.symlink_to(elsewhere / "created-through-the-link.yaml")  # points at nothing yet
    status, _, err = assets(str(out))
    _one_line_refusal(status, err, f"{link} is a symbolic link", "--force replaces the link")
    assert list(elsewhere.iterdir()) == []  # nothing created outside DIR
    assert [p.name for p in out.iterdir()] == ["otel-collector.yaml"]  # nothing written at all


def test_assets_force_replaces_a_link_never_its_target(tmp_path: Path) -> None:
    out, elsewhere = _outside(tmp_path)
    target = elsewhere / "precious.yaml"
    target.write_text("# someone else's file\n")
    dangling = elsewhere / "nothing-here.json"
    (out / "otel-collector.yaml").symlink_to(target)
    (out / "dashboards").mkdir()
    (out / "dashboards" / "failsight-overview.json").symlink_to(dangling)
    status, _, err = assets(str(out), "--force")
    assert status == 0, err
    assert target.read_text() == "# someone else's file\n"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.yaml"]
    for relative in ("otel-collector.yaml", "dashboards/failsight-overview.json"):
        written = out / relative
        assert not written.is_symlink() and written.read_bytes() == (REPO / relative).read_bytes()


def test_assets_force_replaces_a_hard_link_never_the_other_name(tmp_path: Path) -> None:
    out, elsewhere = _outside(tmp_path)
    target = elsewhere / "precious.yaml"
    target.write_text("# someone else's file\n")
    os.link(target, out / "otel-collector.yaml")
    assert assets(str(out), "--force")[0] == 0
    assert target.read_text() == "# someone else's file\n"
    assert (out / "otel-collector.yaml").read_bytes() == (REPO / "otel-collector.yaml").read_bytes()


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_assets_refuses_a_linked_directory_inside_dir(tmp_path: Path, force: list[str]) -> None:
    out, elsewhere = _outside(tmp_path)
    (out / "deploy").symlink_to(elsewhere, target_is_directory=True)
    status, _, err = assets(str(out), *force)
    _one_line_refusal(status, err, f"{out / 'deploy'} is a symbolic link", "follows no link")
    assert list(elsewhere.iterdir()) == []
    assert [p.name for p in out.iterdir()] == ["deploy"]


def test_a_link_swapped_in_after_the_check_is_not_followed(tmp_path: Path) -> None:
    """The write itself follows no link: a directory or file replaced by a link between the
    check and the write is refused (a directory) or replaced (a file), never written through."""
    out, elsewhere = _outside(tmp_path)
    (out / "dashboards").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OSError) as caught:
        _assets._write_inside(out, "dashboards/failsight-overview.json", b"{}")
    assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR)
    target = elsewhere / "precious.yaml"
    target.write_text("# someone else's file\n")
    (out / "otel-collector.yaml").symlink_to(target)
    _assets._write_inside(out, "otel-collector.yaml", b"receivers: {}\n")
    assert target.read_text() == "# someone else's file\n"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.yaml"]
    assert (out / "otel-collector.yaml").read_bytes() == b"receivers: {}\n"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_dir_itself_may_be_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "named").symlink_to(real, target_is_directory=True)
    assert assets(str(tmp_path / "named"))[0] == 0
    assert (real / "otel-collector.yaml").is_file()
