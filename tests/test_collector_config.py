"""otel-collector.yaml and the local stack in deploy/, checked statically (no container engine).

The OTLP and Prometheus-exporter ports are part of what users read in the README; the
README must list the same numbers as the constants below.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from prom_harness import DASHBOARDS_DIR, REPO, RULES_DIR, run_promtool
from test_collector_e2e import require_collector

COLLECTOR = REPO / "otel-collector.yaml"
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"

OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
PROMETHEUS_EXPORTER_PORT = 8889
DEMO_METRICS_PORT = 9464  # failsight.start_metrics_server's default port

GENAI_DIMENSIONS = {
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "failsight.failure_class",
    "failsight.failure_reason",
}
SERVICES = {"otel-collector", "prometheus", "alertmanager", "grafana", "tempo"}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


COLLECTOR_CONFIG = load(COLLECTOR)
PIPELINES = COLLECTOR_CONFIG["service"]["pipelines"]


def component_type(component_id: str) -> str:
    """`otlp_grpc/tempo` -> `otlp_grpc`: the collector's `type[/name]` ids."""
    return component_id.split("/", 1)[0]


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


# --------------------------------------------------------------------------------------
# otel-collector.yaml


def test_collector_config_has_the_sections() -> None:
    assert {"receivers", "processors", "exporters", "connectors", "service"} <= set(
        COLLECTOR_CONFIG
    )
    assert {"traces", "metrics"} <= {component_type(name) for name in PIPELINES}


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_every_pipeline_component_is_defined(pipeline: str) -> None:
    spec = PIPELINES[pipeline]
    connectors = set(COLLECTOR_CONFIG.get("connectors") or {})
    for receiver in spec["receivers"]:
        assert receiver in set(COLLECTOR_CONFIG["receivers"]) | connectors, receiver
    for processor in spec.get("processors", []):
        assert processor in COLLECTOR_CONFIG["processors"], processor
    for exporter in spec["exporters"]:
        assert exporter in set(COLLECTOR_CONFIG["exporters"]) | connectors, exporter


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_memory_limiter_comes_first_then_batch(pipeline: str) -> None:
    processors = [component_type(p) for p in PIPELINES[pipeline]["processors"]]
    assert processors[0] == "memory_limiter", processors
    assert "batch" in processors and processors.index("batch") > 0


def test_every_defined_component_is_used() -> None:
    used = {
        name
        for spec in PIPELINES.values()
        for kind in ("receivers", "processors", "exporters")
        for name in spec.get(kind, [])
    }
    for section in ("receivers", "processors", "exporters", "connectors"):
        for name in COLLECTOR_CONFIG.get(section) or {}:
            assert name in used, f"{section}.{name} is defined but in no pipeline"


def test_spanmetrics_connects_traces_to_metrics() -> None:
    assert "span_metrics" in COLLECTOR_CONFIG["connectors"]
    exported_by = [p for p, s in PIPELINES.items() if "span_metrics" in s["exporters"]]
    received_by = [p for p, s in PIPELINES.items() if "span_metrics" in s["receivers"]]
    assert exported_by and all(component_type(p) == "traces" for p in exported_by)
    assert received_by and all(component_type(p) == "metrics" for p in received_by)


def test_spanmetrics_dimensions_are_the_genai_attributes() -> None:
    spanmetrics = COLLECTOR_CONFIG["connectors"]["span_metrics"]
    assert {d["name"] for d in spanmetrics["dimensions"]} == GENAI_DIMENSIONS
    assert spanmetrics["exemplars"]["enabled"] is True


def test_traces_go_to_a_tracing_backend_and_debug() -> None:
    (traces,) = [s for p, s in PIPELINES.items() if component_type(p) == "traces"]
    assert {component_type(e) for e in traces["exporters"]} >= {
        "otlp_grpc",
        "debug",
        "span_metrics",
    }
    assert traces["receivers"] == ["otlp"]


def test_metrics_are_exported_for_prometheus_with_exemplars() -> None:
    (metrics,) = [s for p, s in PIPELINES.items() if component_type(p) == "metrics"]
    assert "prometheus" in metrics["exporters"]
    prometheus = COLLECTOR_CONFIG["exporters"]["prometheus"]
    assert port_of(prometheus["endpoint"]) == PROMETHEUS_EXPORTER_PORT
    assert prometheus["enable_open_metrics"] is True


def test_otlp_receiver_ports() -> None:
    protocols = COLLECTOR_CONFIG["receivers"]["otlp"]["protocols"]
    assert port_of(protocols["grpc"]["endpoint"]) == OTLP_GRPC_PORT
    assert port_of(protocols["http"]["endpoint"]) == OTLP_HTTP_PORT


@pytest.mark.needs_go
def test_the_real_collector_validates_the_config() -> None:
    """`otelcol validate` of bin/otelcol-failsight (`make collector`): the components exist in
    this release and every key is known."""
    collector = require_collector()
    result = subprocess.run(
        [str(collector), "validate", "--config", str(COLLECTOR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "deprecated" not in output.lower() and "warn" not in output.lower(), output


def test_no_deprecated_component_names() -> None:
    """The names as of collector v0.165: `otlp`, `otlphttp` and `spanmetrics` (exporters and
    connector) are deprecated aliases there, logged as warnings at start-up."""
    used = {
        component_type(name)
        for section in ("exporters", "connectors")
        for name in COLLECTOR_CONFIG.get(section) or {}
    }
    assert not used & {"otlp", "otlphttp", "spanmetrics"}, used


def test_compose_runs_the_collector_release_the_config_is_tested_with() -> None:
    """deploy/docker-compose.yml's collector image is the release of deploy/collector/go.mod
    (older images reject `otlp_grpc` and `span_metrics`)."""
    go_mod = (DEPLOY / "collector" / "go.mod").read_text()
    release = re.search(r"spanmetricsconnector v(\d+\.\d+)\.\d+", go_mod)
    assert release, "deploy/collector/go.mod names no spanmetricsconnector"
    image = COMPOSE_CONFIG["services"]["otel-collector"]["image"]
    assert image.rsplit(":", 1)[1].startswith(release.group(1) + "."), image


def test_collector_config_says_how_to_use_a_real_backend() -> None:
    text = COLLECTOR.read_text()
    assert re.search(r"(?im)^#.*real backend", text)
    assert "${env:" in text, "credentials should come from the environment"


# --------------------------------------------------------------------------------------
# deploy/: docker compose, Prometheus, Tempo

COMPOSE_CONFIG = load(COMPOSE)


def volumes(service: str) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) for each bind mount of `service` (named volumes skipped)."""
    mounts = []
    for volume in COMPOSE_CONFIG["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((DEPLOY / source).resolve(), PurePosixPath(target)))
    return mounts


def host_path(service: str, container_path: str) -> Path:
    """Where a path inside `service`'s container comes from on this checkout."""
    path = PurePosixPath(container_path)
    for source, target in volumes(service):
        if path == target or target in path.parents:
            return source.joinpath(*path.relative_to(target).parts)
    raise AssertionError(f"{container_path} is not mounted into {service}")


def command_flag(service: str, flag: str) -> str:
    command = COMPOSE_CONFIG["services"][service]["command"]
    values = [arg.split("=", 1)[1] for arg in command if arg.lstrip("-").startswith(flag + "=")]
    assert len(values) == 1, f"{service}: {flag} in {command}"
    return values[0]


def published_ports(service: str) -> set[int]:
    return {int(str(p).rsplit(":", 1)[1]) for p in COMPOSE_CONFIG["services"][service]["ports"]}


def test_compose_has_the_five_services() -> None:
    assert set(COMPOSE_CONFIG["services"]) == SERVICES
    for name, service in COMPOSE_CONFIG["services"].items():
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", service["image"]), f"{name}: pin the image tag"
        assert service["image"].rsplit(":", 1)[1] != "latest", name


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_mounted_local_file_exists(service: str) -> None:
    for source, target in volumes(service):
        assert source.exists(), f"{service}: {source} (mounted at {target}) does not exist"
        assert REPO in source.parents, f"{service}: {source} is outside the repository"


def test_published_ports_stay_on_loopback() -> None:
    for name, service in COMPOSE_CONFIG["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_collector_container_runs_this_config_on_the_documented_ports() -> None:
    config = host_path("otel-collector", command_flag("otel-collector", "config"))
    assert config == COLLECTOR
    assert published_ports("otel-collector") >= {
        OTLP_GRPC_PORT,
        OTLP_HTTP_PORT,
        PROMETHEUS_EXPORTER_PORT,
    }


def test_collector_sends_traces_to_tempo_in_the_stack() -> None:
    host, port = COLLECTOR_CONFIG["exporters"]["otlp_grpc"]["endpoint"].rsplit(":", 1)
    assert host in COMPOSE_CONFIG["services"]
    tempo = load(host_path("tempo", command_flag("tempo", "config.file")))
    grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert port_of(grpc) == int(port)


def prometheus_config() -> dict[str, Any]:
    return load(host_path("prometheus", command_flag("prometheus", "config.file")))


def test_prometheus_loads_the_failsight_rules() -> None:
    config_path = PurePosixPath(command_flag("prometheus", "config.file"))
    rule_files = {
        host_path("prometheus", str(config_path.parent / rule))
        for rule in prometheus_config()["rule_files"]
    }
    assert rule_files == {
        RULES_DIR / name
        for name in ("failsight-recording.yml", "failsight-alerts.yml", "failsight-slo.yml")
    }
    assert (
        "--enable-feature=exemplar-storage" in COMPOSE_CONFIG["services"]["prometheus"]["command"]
    )


def test_prometheus_scrapes_the_demo_and_the_collector() -> None:
    targets = {
        target
        for job in prometheus_config()["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert f"host.docker.internal:{DEMO_METRICS_PORT}" in targets
    assert f"otel-collector:{PROMETHEUS_EXPORTER_PORT}" in targets
    extra_hosts = COMPOSE_CONFIG["services"]["prometheus"]["extra_hosts"]
    assert "host.docker.internal:host-gateway" in extra_hosts


@pytest.mark.needs_prometheus
def test_promtool_checks_the_prometheus_config_as_mounted(tmp_path: Path) -> None:
    """Rebuild the container's /etc/prometheus from the mounts, then `promtool check config`."""
    config_path = PurePosixPath(command_flag("prometheus", "config.file"))
    root = tmp_path / "container"
    for source, target in volumes("prometheus"):
        link = root / target.relative_to("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source)
    result = run_promtool("check", "config", str(root / config_path.relative_to("/")))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "3 rule files found" in output, output


def test_grafana_provisioning_is_mounted() -> None:
    environment = COMPOSE_CONFIG["services"]["grafana"].get("environment", {})
    provisioning = DASHBOARDS_DIR / "provisioning"
    for kind in ("datasources", "dashboards"):
        assert host_path("grafana", f"/etc/grafana/provisioning/{kind}") == provisioning / kind
    provider = load(provisioning / "dashboards" / "failsight.yaml")["providers"][0]
    dashboards = host_path("grafana", provider["options"]["path"])
    assert {p.name for p in dashboards.glob("*.json")} == {
        "failsight-overview.json",
        "failsight-call-site.json",
    }
    home = environment.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home is None or host_path("grafana", home).exists()


def test_grafana_datasources_reach_the_stack() -> None:
    sources = load(DASHBOARDS_DIR / "provisioning" / "datasources" / "prometheus.yaml")
    urls = {ds["type"]: ds["url"] for ds in sources["datasources"]}
    assert urls["prometheus"] == "http://prometheus:9090"
    tempo = load(host_path("tempo", command_flag("tempo", "config.file")))
    assert urls["tempo"] == f"http://tempo:{tempo['server']['http_listen_port']}"
