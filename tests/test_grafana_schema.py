"""The dashboards against the schema Grafana publishes: the TypeScript types of the
`@grafana/schema` npm package, compiled with `tsc --noEmit --strict`.

Each dashboard becomes a `.ts` file that assigns its JSON to the `Dashboard` type, and each
panel to `Panel` with its plugin's `Options` and custom `FieldConfig` (timeseries, stat,
table, bargauge). TypeScript checks object literals for unknown properties, so a misspelt
key, a wrong type (`gridPos: "x"`), a value outside an enum (a threshold mode, a legend
placement) or a missing required field fails the compile. Deliberately broken copies of a
dashboard prove that each kind of mistake is caught.

Two adaptations of the published types, both narrow and named below:
- JSON holds strings where the types declare TypeScript string enums (`ThresholdsMode`,
  `FieldColorModeId`, ...): `Json<T>` replaces each enum by the union of its values.
- Grafana's Prometheus data source reads `titleFormat`, `textFormat`, `tagKeys` and
  `useValueForTime` from an annotation, fields the dashboard type does not list.

The package and `tsc` come from `tests/grafana_schema/` (package.json and package-lock.json;
`make test` runs `npm ci` there); `@grafana/schema` is pinned to the version of the Grafana
image deploy/docker-compose.yml runs. Without node/npm, or when the install fails, the tests
skip, and fail when CI is set.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prom_harness import iter_panels, load_dashboards

pytestmark = pytest.mark.needs_node

SCHEMA_DIR = Path(__file__).resolve().parent / "grafana_schema"
TSC = SCHEMA_DIR / "node_modules" / ".bin" / "tsc"
INSTALLED = SCHEMA_DIR / "node_modules" / ".package-lock.json"  # written by npm ci
DASHBOARDS = load_dashboards()

# Panel type -> the module of @grafana/schema with its `Options`, and whether the plugin
# has custom field options (`FieldConfig`; stat and bargauge have none).
PANEL_TYPES = {
    "timeseries": ("TimeSeriesPanelCfg", True),
    "stat": ("StatPanelCfg", False),
    "table": ("TablePanelCfg", True),
    "bargauge": ("BarGaugePanelCfg", False),
}

PRELUDE = """\
import type {
  AnnotationQuery, Dashboard, DataQuery, FieldConfig, FieldConfigSource, Panel, RowPanel,
} from "@grafana/schema";
%(imports)s

/** JSON spells TypeScript string enums as their values. */
type Json<T> = T extends string
  ? `${T}`
  : T extends readonly (infer U)[]
    ? Json<U>[]
    : T extends object
      ? { [K in keyof T]: Json<T[K]> }
      : T;

/** Fields Grafana's Prometheus data source reads from an annotation. */
type PrometheusAnnotation = AnnotationQuery<DataQuery & { expr?: string; interval?: string }> & {
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
};

type FailsightDashboard = Omit<Dashboard, "annotations"> & {
  annotations?: { list?: PrometheusAnnotation[] };
};

/** A panel whose options and custom field config are exactly those of its plugin. */
type PluginPanel<O, C> = Omit<Panel, "options" | "fieldConfig"> & {
  options?: Partial<O>;
  fieldConfig?: Omit<FieldConfigSource, "defaults"> & {
    defaults: Omit<FieldConfig, "custom"> & { custom?: Partial<C> };
  };
};
"""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason}; CI is set, so the Grafana schema check must run", pytrace=False)
    pytest.skip(reason)


def ensure_tsc() -> Path:
    """`tsc` with @grafana/schema installed from the lock file (`npm ci` when stale)."""
    if shutil.which("node") is None:
        _unavailable("node is not on PATH: install Node.js 18+ for the Grafana schema check")
    lock = SCHEMA_DIR / "package-lock.json"
    stale = not INSTALLED.exists() or INSTALLED.stat().st_mtime < lock.stat().st_mtime
    if stale or not TSC.exists():
        npm = shutil.which("npm")
        if npm is None:
            _unavailable("npm is not on PATH: install npm for the Grafana schema check")
        assert npm is not None
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=SCHEMA_DIR, capture_output=True, text=True, timeout=600,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if result.returncode != 0 or not TSC.exists():
            _unavailable(f"npm ci in {SCHEMA_DIR} failed:\n{result.stdout}{result.stderr}")
    return TSC


def typescript_source(dashboard: dict[str, Any]) -> str:
    """The dashboard as TypeScript: the whole model as `Dashboard`, each panel as its
    plugin's `Panel`."""
    lines = [
        PRELUDE
        % {
            "imports": "\n".join(
                f'import type * as {kind} from "@grafana/schema/dist/esm/raw/composable/'
                f'{kind}/panelcfg/x/{module}_types.gen";'
                for kind, (module, _) in PANEL_TYPES.items()
            )
        },
        f"export const dashboard: Json<FailsightDashboard> = {json.dumps(dashboard, indent=2)};",
    ]
    for index, panel in enumerate(iter_panels(dashboard.get("panels", []))):
        kind = panel.get("type")
        if kind == "row":
            panel_type = "RowPanel"
        elif kind in PANEL_TYPES:
            custom = f"{kind}.FieldConfig" if PANEL_TYPES[kind][1] else "Record<string, never>"
            panel_type = f"PluginPanel<{kind}.Options, {custom}>"
        else:
            panel_type = "never"  # a panel type this check has no plugin schema for
        lines.append(
            f"// panel {panel.get('title')!r}\n"
            f"export const panel_{index}: Json<{panel_type}> = {json.dumps(panel, indent=2)};"
        )
    return "\n\n".join(lines) + "\n"


TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "noEmit": True,
        "module": "esnext",
        "moduleResolution": "bundler",
        "target": "es2022",
        "skipLibCheck": True,  # the package's own .d.ts files are not ours to check
        "types": [],
    },
    "include": ["*.ts"],
}


def compile_dashboards(workdir: Path, dashboards: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Run `tsc --noEmit --strict` on one .ts file per dashboard; its errors per dashboard."""
    tsc = ensure_tsc()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "node_modules").symlink_to(SCHEMA_DIR / "node_modules", target_is_directory=True)
    (workdir / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    files = {}
    for name, dashboard in dashboards.items():
        stem = re.sub(r"\W", "_", name.removesuffix(".json"))
        (workdir / f"{stem}.ts").write_text(typescript_source(dashboard))
        files[f"{stem}.ts"] = name
    result = subprocess.run(
        [str(tsc), "--noEmit", "--strict", "-p", str(workdir / "tsconfig.json")],
        cwd=workdir, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    errors = dict.fromkeys(dashboards, "")
    current = None
    for line in result.stdout.splitlines():
        match = re.match(r"(\S+\.ts)\(\d+,\d+\): error", line)
        if match:
            current = files.get(match.group(1))
            if current is None:  # an error in the set-up itself (tsconfig, the import paths)
                pytest.fail(f"tsc: {result.stdout}{result.stderr}")
        if current is not None:  # an error line, or the lines that continue it
            errors[current] += line + "\n"
    if result.returncode != 0 and not any(errors.values()):
        pytest.fail(f"tsc failed without naming a dashboard: {result.stdout}{result.stderr}")
    return errors


# --------------------------------------------------------------------------------------
# Deliberately broken copies of the overview: each must fail the compile.


def _first(dashboard: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(p for p in iter_panels(dashboard["panels"]) if p["type"] == kind)


def _gridpos_string(d: dict[str, Any]) -> None:
    _first(d, "timeseries")["gridPos"] = "x"


def _misspelt_panel_key(d: dict[str, Any]) -> None:
    panel = _first(d, "timeseries")
    panel["fieldconfig"] = panel.pop("fieldConfig")


def _threshold_mode(d: dict[str, Any]) -> None:
    _first(d, "stat")["fieldConfig"]["defaults"]["thresholds"]["mode"] = "percent"


def _legend_placement(d: dict[str, Any]) -> None:
    _first(d, "timeseries")["options"]["legend"]["placement"] = "middle"


def _draw_style(d: dict[str, Any]) -> None:
    _first(d, "timeseries")["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "curvy"


def _panel_without_type(d: dict[str, Any]) -> None:
    del _first(d, "table")["type"]


def _unknown_panel_plugin(d: dict[str, Any]) -> None:
    _first(d, "stat")["type"] = "graph"  # the Angular panel Grafana 11 removed


def _schema_version_string(d: dict[str, Any]) -> None:
    d["schemaVersion"] = "39"


BROKEN = {
    "gridPos is a string": (_gridpos_string, "gridPos"),
    "misspelt panel key": (_misspelt_panel_key, "fieldconfig"),
    "threshold mode outside the enum": (_threshold_mode, '"percent"'),
    "legend placement outside the enum": (_legend_placement, '"middle"'),
    "series draw style outside the enum": (_draw_style, '"curvy"'),
    "panel without a type": (_panel_without_type, "type"),
    "panel plugin without a schema": (_unknown_panel_plugin, "never"),
    "schemaVersion is a string": (_schema_version_string, "schemaVersion"),
}


@pytest.fixture(scope="module")
def schema_errors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """tsc's errors for each shipped dashboard and each broken copy, in one compile."""
    dashboards = dict(DASHBOARDS)
    for label, (breaks, _) in BROKEN.items():
        broken = copy.deepcopy(DASHBOARDS["failsight-overview.json"])
        breaks(broken)
        dashboards[f"broken: {label}"] = broken
    yield compile_dashboards(tmp_path_factory.mktemp("grafana-schema"), dashboards)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_compiles_against_grafanas_schema(
    schema_errors: dict[str, str], name: str
) -> None:
    errors = schema_errors[name]
    assert errors == "", f"{name} does not match @grafana/schema:\n{errors}"


@pytest.mark.parametrize("label", sorted(BROKEN))
def test_the_schema_check_rejects_a_broken_dashboard(
    schema_errors: dict[str, str], label: str
) -> None:
    _, mention = BROKEN[label]
    errors = schema_errors[f"broken: {label}"]
    assert errors, f"tsc accepted a dashboard with {label}"
    assert mention in errors, errors


def test_every_panel_type_has_a_plugin_schema() -> None:
    for name, dashboard in DASHBOARDS.items():
        for panel in iter_panels(dashboard["panels"]):
            assert panel["type"] in {"row", *PANEL_TYPES}, f"{name}: {panel['title']}"


def test_the_schema_is_that_of_the_grafana_the_compose_file_runs() -> None:
    compose = (SCHEMA_DIR.parents[1] / "deploy" / "docker-compose.yml").read_text()
    (grafana,) = re.findall(r"image:\s*grafana/grafana:(\S+)", compose)
    manifest = json.loads((SCHEMA_DIR / "package.json").read_text())
    assert manifest["devDependencies"]["@grafana/schema"] == grafana


def test_schema_package_is_pinned_by_the_lock_file() -> None:
    manifest = json.loads((SCHEMA_DIR / "package.json").read_text())
    lock = json.loads((SCHEMA_DIR / "package-lock.json").read_text())
    for package, version in manifest["devDependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{package} {version} is not exact"
        assert lock["packages"][f"node_modules/{package}"]["version"] == version
