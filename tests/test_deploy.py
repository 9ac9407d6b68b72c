"""The deployment artifacts in deploy/ are valid for the tools that will read them:
Kubernetes manifests against the API schemas (kubernetes-validate, strict), the Compose
file against the Compose spec (check-jsonschema's vendored schema), Prometheus rules
referring only to metrics the relay exports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from relay.metrics import RelayMetrics

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_validate_strictly(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(),
                                     strict=True)


def test_the_kubernetes_set_is_complete_and_probes_the_health_routes() -> None:
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in MANIFESTS}
    assert kinds == {"Deployment", "Service", "PodDisruptionBudget",
                     "HorizontalPodAutoscaler", "Secret", "Job"}
    deployment = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    job = yaml.safe_load((DEPLOY / "k8s" / "migrate-job.yaml").read_text())
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_compose_file_follows_the_compose_spec() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    done = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec",
                           str(DEPLOY / "compose.yaml")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert {"postgres", "relay-a", "relay-b", "prometheus"} <= set(services)


def test_alert_rules_use_only_exported_metrics() -> None:
    exported = {family.name for family in RelayMetrics().families()}
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    names = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"]
            names |= set(re.findall(r"\b(orca_relay_[a-z_]+?)(?:_total)?\b", rule["expr"]))
    assert names and names <= {n.removesuffix("_total") for n in exported}
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert scrape["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_the_image_runs_as_a_non_root_user_on_a_pinned_base() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim-\w+$", dockerfile, re.M)
    assert re.search(r"^USER orca$", dockerfile, re.M)
