"""deploy/kubernetes: every manifest is valid against the Kubernetes OpenAPI schemas (strict: no unknown
fields), the pieces refer to each other correctly, and the configurations in the ConfigMaps are ones the
commands accept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from fleetmeter.collectors.settings import CollectorSettings
from fleetmeter.common.settings import LayeredSettings
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.sql.settings import AnalysisSettings

KUBERNETES = Path(__file__).parents[2] / "deploy" / "kubernetes"
#: Custom resources, for which the Kubernetes schemas have nothing (checked by hand below).
CUSTOM_KINDS = {"ServiceMonitor", "Kustomization"}
Resource = dict[str, Any]


def resources() -> list[Resource]:
    files = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"]
    return [doc for name in files for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]


def by_kind(kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources() if r["kind"] == kind}


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    assert listed == {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.latest_version()])
def test_manifests_are_valid_against_the_kubernetes_schemas(version: str) -> None:
    checked = 0
    for resource in resources():
        if resource["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(resource, version, strict=True)
        checked += 1
    assert checked >= 12


def workloads() -> list[Resource]:
    return [*by_kind("DaemonSet").values(), *by_kind("Deployment").values()]


def test_selectors_services_and_monitors_find_their_pods() -> None:
    for workload in workloads():
        assert workload["spec"]["selector"]["matchLabels"].items() <= workload["spec"]["template"]["metadata"][
            "labels"].items()
    ports = {(w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], port["name"])
             for w in workloads() for c in w["spec"]["template"]["spec"]["containers"] for port in c["ports"]}
    services = by_kind("Service")
    for service in services.values():
        app = service["spec"]["selector"]["app.kubernetes.io/name"]
        assert {(app, port["targetPort"]) for port in service["spec"]["ports"]} <= ports
    for monitor in by_kind("ServiceMonitor").values():
        matched = [s for s in services.values()
                   if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
        assert len(matched) == 1
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in matched[0]["spec"]["ports"]}


def test_every_configmap_secret_and_service_account_a_pod_uses_exists() -> None:
    configmaps, secrets, accounts = by_kind("ConfigMap"), by_kind("Secret"), by_kind("ServiceAccount")
    for workload in workloads():
        pod = workload["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] in accounts
        for volume in pod["volumes"]:
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert source["secretRef"]["name"] in secrets or source["secretRef"].get("optional")
            for variable in container.get("env", []):
                if reference := variable.get("valueFrom", {}).get("configMapKeyRef"):
                    assert reference["key"] in configmaps[reference["name"]]["data"]


def test_only_the_collector_may_read_pods_and_only_read() -> None:
    (role,) = by_kind("ClusterRole").values()
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    assert by_kind("ServiceAccount")["fleetmeter-pipeline"]["automountServiceAccountToken"] is False
    assert not by_kind("Role") and len(by_kind("ClusterRoleBinding")) == 1


@pytest.mark.parametrize(("configmap", "key", "settings"), [
    ("fleetmeter-collector", "collector.yaml", CollectorSettings),
    ("fleetmeter-pipeline", "pipeline.yaml", PipelineSettings),
    ("fleetmeter-pipeline", "analysis.yaml", AnalysisSettings),
])
def test_configmaps_hold_configurations_the_commands_accept(configmap: str, key: str,
                                                            settings: type[LayeredSettings], tmp_path: Path) -> None:
    path = tmp_path / key
    path.write_text(by_kind("ConfigMap")[configmap]["data"][key])
    loaded = settings(config_file=path)
    assert loaded.model_dump(exclude_unset=True)  # the file's settings, not only defaults
