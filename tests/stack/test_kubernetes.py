"""deploy/kubernetes: the generated PrometheusRule is current and valid, the manifests fit together."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from processes import binary

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy/kubernetes"
spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
generate = importlib.util.module_from_spec(spec)
sys.modules["k8s_generate"] = generate
spec.loader.exec_module(generate)


def load(name: str) -> dict:
    return yaml.safe_load((K8S / name).read_text())


def test_committed_prometheusrule_is_what_the_generator_writes():
    committed = (K8S / "prometheusrule.yaml").read_text()
    assert committed == generate.render(), \
        "deploy/kubernetes/prometheusrule.yaml is stale: run .venv/bin/python deploy/kubernetes/generate.py"


def test_generator_check_mode_detects_a_stale_file(tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "OUTPUT", tmp_path / "prometheusrule.yaml")
    monkeypatch.setattr(generate, "REPO", tmp_path)
    assert generate.main(["--check"]) == 1  # missing
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0
    (tmp_path / "prometheusrule.yaml").write_text(generate.render().replace("for: 5m", "for: 6m", 1))
    assert generate.main(["--check"]) == 1


def test_prometheusrule_carries_every_rule_group_unchanged():
    rule = load("prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    from_files = [g for p in sorted((REPO / "prometheus/rules").glob("*.yml"))
                  for g in (yaml.safe_load(p.read_text()) or {}).get("groups", [])]
    assert from_files and rule["spec"]["groups"] == from_files


def test_generator_refuses_duplicate_group_names(tmp_path):
    group = {"groups": [{"name": "same", "rules": [{"record": "a:b:c", "expr": "1"}]}]}
    (tmp_path / "a.yml").write_text(yaml.safe_dump(group))
    (tmp_path / "b.yml").write_text(yaml.safe_dump(group))
    with pytest.raises(SystemExit, match="same"):
        generate.render(tmp_path)


@pytest.mark.skipif(not binary("promtool"), reason="needs promtool (apt-get install prometheus)")
def test_promtool_accepts_the_rule_groups_of_the_prometheusrule(tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": load("prometheusrule.yaml")["spec"]["groups"]}))
    done = subprocess.run([binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_kustomization_lists_every_manifest():
    kustomization = load("kustomization.yaml")
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def containers() -> dict[str, dict]:
    pod = load("deployment.yaml")["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


def test_exporter_is_a_sidecar_with_otlp_on_localhost():
    c = containers()
    assert set(c) == {"app", "spanscope-exporter"}
    env = {e["name"]: e["value"] for e in c["spanscope-exporter"]["env"]}
    assert env["SPANSCOPE_OTLP_GRPC"].startswith("127.0.0.1:") and env["SPANSCOPE_OTLP_HTTP"].startswith("127.0.0.1:")
    assert env["SPANSCOPE_WEB"] == "0.0.0.0:8889"
    args = " ".join(c["app"]["args"])
    assert f"--endpoint http://{env['SPANSCOPE_OTLP_HTTP']}" in args
    exporter = c["spanscope-exporter"]
    assert exporter["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert exporter["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_pods_run_unprivileged_with_pinned_images():
    deployment = load("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    mounted = set()
    for c in pod["containers"]:
        repo, _, tag = c["image"].rpartition(":")
        assert repo and tag and tag != "latest", c["image"]
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        # A read-only root needs writable mounts where the process writes (temp files, state).
        paths = {m["mountPath"] for m in c.get("volumeMounts", [])}
        assert "/tmp" in paths, c["name"]
        mounted |= {m["name"] for m in c.get("volumeMounts", [])}
    assert mounted == {v["name"] for v in pod["volumes"]}


def test_service_and_servicemonitor_select_the_sidecar_port():
    deployment, service, monitor = load("deployment.yaml"), load("service.yaml"), load("servicemonitor.yaml")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    port_names = {p["name"] for p in containers()["spanscope-exporter"]["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports
        assert service_ports[endpoint["port"]]["targetPort"] in port_names
        assert endpoint["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_servicemonitor_sets_the_job_label_the_rules_select():
    prometheus = yaml.safe_load((REPO / "prometheus/prometheus.yml").read_text())
    exporter_job = next(job["job_name"] for job in prometheus["scrape_configs"]
                        if any(t.endswith(":8889") for sc in job.get("static_configs", []) for t in sc["targets"]))
    rules_text = (K8S / "prometheusrule.yaml").read_text()
    assert f'job="{exporter_job}"' in rules_text
    for endpoint in load("servicemonitor.yaml")["spec"]["endpoints"]:
        job = [r for r in endpoint.get("relabelings", []) if r.get("targetLabel") == "job"]
        assert job and job[-1]["replacement"] == exporter_job
