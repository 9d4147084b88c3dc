"""The Helm chart, checked with Helm's own library and the Kubernetes schemas.

``helm-python-sdk`` binds Helm v4's Go SDK: ``lint`` and ``render`` here are what
``helm lint`` and ``helm template`` do. Every rendered object is validated against the
Kubernetes OpenAPI schemas of the oldest supported and the newest Kubernetes version
(``kubernetes-validate``, strict: unknown fields are errors). The two prometheus-operator
objects have no Kubernetes schema: the PrometheusRule's groups go through
``promtool check rules``, the ServiceMonitor is checked against the Service it selects.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from deploy_support import (
    ALERTS,
    CHART,
    CHART_EXAMPLES,
    DASHBOARD,
    EXAMPLE_SECRETS,
    by_kind,
    load_values,
    manifests,
    one,
    promtool,
    render,
    rendered_config,
    run,
)

from pumphouse import __version__


def _kubernetes_versions() -> tuple[str, str]:
    """The oldest schemas kubernetes-validate ships from the chart's kubeVersion floor
    (1.25) on, and the newest."""
    available = sorted(
        set(kubernetes_validate.utils.all_versions()),
        key=lambda v: tuple(int(part) for part in v.split(".")),
    )
    floor = next(v for v in available if tuple(int(p) for p in v.split(".")[:2]) >= (1, 25))
    return floor, kubernetes_validate.latest_version()


#: The versions every rendered object is validated against.
KUBERNETES_VERSIONS = _kubernetes_versions()

#: Every optional part switched on, and every list filled: the widest rendering.
EVERYTHING: dict[str, Any] = {
    "extraArgs": ["--log-level", "debug"],
    "envFromSecrets": ["pumphouse-aws"],
    "envFrom": [{"configMapRef": {"name": "pumphouse-env"}}],
    "env": [{"name": "EXTRA", "value": "1"}],
    "imagePullSecrets": [{"name": "registry"}],
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}},
    "podAnnotations": {"example.com/owner": "team"},
    "podLabels": {"team": "orders"},
    "priorityClassName": "high",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "pumphouse"}},
                    },
                }
            ]
        }
    },
    "extraVolumes": [{"name": "code", "configMap": {"name": "handlers"}}],
    "extraVolumeMounts": [{"name": "code", "mountPath": "/var/task/code", "readOnly": True}],
    "initContainers": [{"name": "init", "image": "busybox:1.36", "command": ["true"]}],
    "tmpVolume": {"medium": "Memory", "sizeLimit": "256Mi"},
    "service": {"annotations": {"example.com/scrape": "true"}},
    "serviceMonitor": {
        "enabled": True,
        "labels": {"release": "prometheus"},
        "relabelings": [{"action": "replace", "targetLabel": "team", "replacement": "orders"}],
        "metricRelabelings": [{"action": "drop", "regex": "pumphouse_build_info"}],
    },
    "prometheusRule": {
        "enabled": True,
        "labels": {"release": "prometheus"},
        "additionalGroups": [
            {
                "name": "pumphouse-extra",
                "rules": [
                    {
                        "record": "pumphouse:invocations:rate5m",
                        "expr": "sum by (function) (rate(pumphouse_invocations_total[5m]))",
                    }
                ],
            }
        ],
    },
    "grafanaDashboard": {"enabled": True},
    "podDisruptionBudget": {"minAvailable": 1},
    "autoscaling": {
        "enabled": True,
        "targetMemoryUtilizationPercentage": 80,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
    },
    "config": {"Settings": {"StateStore": "redis://redis:6379/0"}},
}

PERSISTENT: dict[str, Any] = {"persistence": {"enabled": True, "storageClass": "standard"}}

VALUE_SETS: dict[str, dict[str, Any] | None] = {
    "defaults": None,
    **{path.stem: load_values(path) for path in CHART_EXAMPLES},
    "everything": EVERYTHING,
    "persistent": PERSISTENT,
}


def _render(name: str) -> list[dict[str, Any]]:
    return manifests(render(VALUE_SETS[name]))


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _deployment(objects)["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_examples_exist() -> None:
    names = {path.stem for path in CHART_EXAMPLES}
    assert "values-multi-replica-redis" in names
    assert len(names) >= 2


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_is_clean(name: str) -> None:
    values = VALUE_SETS[name]
    for kube in ("v1.25.0", *(f"v{v}" for v in KUBERNETES_VERSIONS)):
        report = helm.lint(str(CHART), values, strict=True, kube_version=kube)
        assert report["total_charts_linted"] == 1
        assert report["errors"] == [], report
        # Severity 1 (info) is only "icon is recommended"; nothing at warning or above.
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert problems == [], problems
        infos = {m["error"] for m in report["messages"]}
        assert infos <= {"icon is recommended"}, infos


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_manifest_validates_against_the_kubernetes_schemas(name: str) -> None:
    objects = _render(name)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ConfigMap", "Service", "ServiceAccount"} <= kinds
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: checked by the ServiceMonitor / PrometheusRule tests
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
        assert obj["metadata"]["namespace"] == "apps"
    assert checked >= 2 * 4


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_rendered_config_passes_pumphouse_validate(name: str, tmp_path: Path) -> None:
    config = tmp_path / "pumphouse.yaml"
    config.write_text(rendered_config(_render(name)))
    # The file alone: its CodeUri are paths inside the users' images, absent here.
    result = run(
        [sys.executable, "-m", "pumphouse", "validate", "-c", str(config), "--skip-handler-check"],
        env=EXAMPLE_SECRETS,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_the_multi_replica_example_uses_redis_and_spreads() -> None:
    values = VALUE_SETS["values-multi-replica-redis"]
    assert values is not None
    objects = _render("values-multi-replica-redis")
    deployment = _deployment(objects)
    assert deployment["spec"]["replicas"] > 1
    config = yaml.safe_load(rendered_config(objects))
    assert config["Settings"]["StateStore"].startswith("redis://")
    sources = {
        m.get("EventSourceArn", "a:b:kafka").split(":")[2] for m in config["EventSourceMappings"]
    }
    assert "kinesis" in sources  # shard leases shared through Redis
    pod = deployment["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"]
    assert {"secretRef": {"name": "pumphouse-redis"}} in _container(objects)["envFrom"]
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    sa = one(objects, "ServiceAccount")
    assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]


def test_pod_security_probes_and_volumes() -> None:
    objects = _render("defaults")
    deployment = _deployment(objects)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["args"] == ["run", "-c", "/etc/pumphouse/pumphouse.yaml"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # worker temp dirs (Lambda's /tmp)
    assert "emptyDir" in volumes[mounts["/var/lib/pumphouse"]]
    assert (
        volumes[mounts["/etc/pumphouse"]]["configMap"]["name"]
        == one(objects, "ConfigMap")["metadata"]["name"]
    )
    # The SQLite default lives in the state volume.
    config = yaml.safe_load(rendered_config(objects))
    assert config["Settings"]["StateStore"] == "sqlite:////var/lib/pumphouse/state.db"
    assert config["Settings"]["MetricsAddress"].endswith(":9400")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_ports_grace_period_and_selectors_agree(name: str) -> None:
    objects = _render(name)
    deployment = _deployment(objects)
    template = deployment["spec"]["template"]
    config = yaml.safe_load(rendered_config(objects))
    settings = config.get("Settings", {})
    port = int(str(settings.get("MetricsAddress", "0.0.0.0:9400")).rsplit(":", 1)[1])
    container = _container(objects)
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    timeout = float(settings.get("ShutdownTimeoutSeconds", 30))
    assert template["spec"]["terminationGracePeriodSeconds"] > timeout
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    service = one(objects, "Service")
    assert service["spec"]["selector"] == selector
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"]
    for pdb in by_kind(objects, "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"] == selector
    for hpa in by_kind(objects, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert "replicas" not in deployment["spec"]
    for monitor in by_kind(objects, "ServiceMonitor"):
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    if any(
        v["name"] == "state" and "persistentVolumeClaim" in v for v in template["spec"]["volumes"]
    ):
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        claim = one(objects, "PersistentVolumeClaim")
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_a_new_configuration_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any] | None) -> str:
        deployment = _deployment(manifests(render(values)))
        value = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        assert isinstance(value, str) and len(value) == 64
        return value

    mapping = {
        "Functions": {"f": {"Handler": "app.handler", "CodeUri": "/var/task/f"}},
        "EventSourceMappings": [
            {"FunctionName": "f", "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q"}
        ],
    }
    base = checksum(None)
    assert checksum(None) == base  # deterministic
    assert checksum({"config": mapping}) != base
    assert checksum({"replicaCount": 1, "resources": {}}) == base  # only the config counts


def test_everything_enabled_renders_every_optional_object() -> None:
    objects = _render("everything")
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "ConfigMap",  # configuration
            "ConfigMap",  # Grafana dashboard
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    )
    container = _container(objects)
    assert container["args"][:2] == ["--log-level", "debug"]
    assert container["envFrom"] == [
        {"secretRef": {"name": "pumphouse-aws"}},
        {"configMapRef": {"name": "pumphouse-env"}},
    ]
    dashboards = [o for o in by_kind(objects, "ConfigMap") if "pumphouse.json" in o["data"]]
    assert json.loads(dashboards[0]["data"]["pumphouse.json"]) == json.loads(DASHBOARD.read_text())
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_the_prometheus_rule_carries_the_alert_rules(tmp_path: Path) -> None:
    rule = one(_render("everything"), "PrometheusRule")
    groups = rule["spec"]["groups"]
    shipped = yaml.safe_load(ALERTS.read_text())["groups"]
    assert groups[: len(shipped)] == shipped
    assert groups[-1]["name"] == "pumphouse-extra"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    result = run([promtool(), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_chart_ships_the_same_alerts_and_dashboard() -> None:
    assert (CHART / "files" / "alerts.yaml").read_text() == ALERTS.read_text()
    assert (CHART / "files" / "pumphouse.json").read_text() == DASHBOARD.read_text()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {
                "replicaCount": 2,
                "config": {
                    "EventSourceMappings": [
                        {
                            "FunctionName": "f",
                            "EventSourceArn": "arn:aws:kinesis:us-east-1:000000000000:stream/s",
                        }
                    ]
                },
            },
            "SQLite state store would each process every shard",
        ),
        ({"replicaCount": 2, "persistence": {"enabled": True}}, "ReadWriteOnce"),
        (
            {"terminationGracePeriodSeconds": 30},
            "must be above config.Settings.ShutdownTimeoutSeconds",
        ),
        (
            {"config": {"Settings": {"MetricsAddress": "127.0.0.1:9400"}}},
            "listens on loopback only",
        ),
        ({"replicaCount": "three"}, "want integer"),
        ({"unknownKey": True}, "additional properties 'unknownKey' not allowed"),
        ({"config": {"Setings": {}}}, "additional properties 'Setings' not allowed"),
    ],
    ids=[
        "sqlite-streams-replicas",
        "rwo-replicas",
        "grace-period",
        "loopback",
        "schema-type",
        "schema-unknown",
        "config-typo",
    ],
)
def test_the_chart_refuses_unsafe_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    assert message in str(caught.value)


def test_multi_replica_sqlite_is_fine_without_streams() -> None:
    values = {
        "replicaCount": 3,
        "config": {
            "Functions": {"f": {"Handler": "app.handler"}},
            "EventSourceMappings": [
                {"FunctionName": "f", "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q"}
            ],
        },
    }
    assert _deployment(manifests(render(values)))["spec"]["replicas"] == 3


#: Values passed through whole (a Kubernetes object, the pumphouse configuration).
OPAQUE_VALUES = {
    "config",
    "podSecurityContext",
    "securityContext",
    "resources",
    "grafanaDashboard.labels",
}


def _leaf_paths(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and value and prefix not in OPAQUE_VALUES:
        paths: list[str] = []
        for key, item in value.items():
            paths.extend(_leaf_paths(item, f"{prefix}.{key}" if prefix else key))
        return paths
    return [prefix]


def test_the_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    missing = [
        path
        for path in _leaf_paths(load_values(CHART / "values.yaml"))
        if f"`{path}`" not in readme
    ]
    assert missing == []


def test_chart_metadata() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        metadata = chart.metadata
        schema = chart.schema
    assert metadata["name"] == "pumphouse"
    assert metadata["appVersion"] == __version__  # the image tag the chart deploys
    assert metadata["kubeVersion"] == ">=1.25.0-0"
    assert schema is not None and schema["additionalProperties"] is False
    # The schema names every top-level value, and nothing else.
    assert set(schema["properties"]) - {"global"} == set(load_values(CHART / "values.yaml"))


def test_values_do_not_leak_between_renderings() -> None:
    before = copy.deepcopy(EVERYTHING)
    render(EVERYTHING)
    assert before == EVERYTHING
