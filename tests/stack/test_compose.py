"""docker-compose.yml and the Dockerfiles, checked by construction (no Docker engine here).

Beyond the shape (pinned images, health checks, start order, no default password) the checks tie
the compose file to the configs it mounts: every bind source exists, every path a config reads
inside a container is mounted there, and every host name a config dials is a service.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILES = {"exporter": REPO / "exporter/Dockerfile", "demo": REPO / "demo/Dockerfile"}
VAR_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def expand_defaults(value: str) -> str:
    """`${VAR:-default}` as Compose resolves it when VAR is unset."""
    return VAR_DEFAULT.sub(lambda m: m.group(2), value)


def mounts(service: str) -> list[dict]:
    """Volumes of a service in the long form: type, source, target, read_only."""
    out = []
    for v in SERVICES[service].get("volumes", []):
        if isinstance(v, dict):
            out.append(v)
            continue
        source, target, *mode = v.split(":")
        kind = "bind" if source.startswith((".", "/")) else "volume"
        out.append({"type": kind, "source": source, "target": target, "read_only": mode == ["ro"]})
    return out


def mount_for(service: str, container_path: str) -> dict:
    """The mount that holds `container_path` inside the service (longest matching target)."""
    matching = [m for m in mounts(service) if container_path == m["target"] or
                container_path.startswith(m["target"].rstrip("/") + "/")]
    assert matching, f"{service}: nothing mounted at {container_path}"
    return max(matching, key=lambda m: len(m["target"]))


def published_container_ports(service: str) -> set[int]:
    return {int(str(p).split(":")[-1].split("/")[0]) for p in SERVICES[service].get("ports", [])}


def test_the_five_services_are_there():
    assert set(SERVICES) == {"exporter", "demo", "prometheus", "alertmanager", "grafana"}


def test_published_ports_are_the_documented_ones_on_loopback():
    expected = {"exporter": {4317, 4318, 8889}, "prometheus": {9090}, "alertmanager": {9093}, "grafana": {3000}}
    for service, ports in expected.items():
        assert published_container_ports(service) == ports, service
    for service in SERVICES.values():
        for p in service.get("ports", []):
            assert str(p).startswith("127.0.0.1:"), f"{p}: publish on loopback; a proxy adds TLS and auth"


def grafana_version() -> str:
    tree = ast.parse((REPO / "grafana/generate.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "GRAFANA_VERSION" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("GRAFANA_VERSION not found in grafana/generate.py")


def test_images_are_pinned():
    for name, service in SERVICES.items():
        image = service.get("image")
        assert image, f"{name}: name the image (built ones get a versioned tag)"
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    assert SERVICES["grafana"]["image"] == f"grafana/grafana:{grafana_version()}", \
        "the dashboards are generated for grafana/generate.py's GRAFANA_VERSION"
    assert SERVICES["prometheus"]["image"].startswith("prom/prometheus:v2.")


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies():
    for name, service in SERVICES.items():
        hc = service.get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), f"{name}: no healthcheck"
        assert hc["test"][0] in ("CMD", "CMD-SHELL"), name
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in SERVICES and cond == {"condition": "service_healthy"}, f"{name} -> {dep}"
    deps = {n: set(s.get("depends_on") or {}) for n, s in SERVICES.items()}
    assert deps == {"exporter": set(), "demo": {"exporter"}, "prometheus": {"exporter", "alertmanager"},
                    "alertmanager": set(), "grafana": {"prometheus"}}


def test_grafana_admin_password_comes_from_the_environment_without_default():
    env = SERVICES["grafana"]["environment"]
    password = env["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", password), password
    for service in SERVICES.values():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert ":-" not in str(value) and "$" in str(value), f"{key} must not have a default"


def test_bind_mounts_exist_in_the_repository():
    secrets_mounts = 0
    for name in SERVICES:
        for m in mounts(name):
            if m["type"] != "bind":
                assert m["source"] in COMPOSE["volumes"], f"{name}: undeclared volume {m['source']}"
                continue
            source = expand_defaults(m["source"])
            assert source.startswith("./"), f"{name}: bind {source} must be inside the repository"
            if m["target"] == "/etc/alertmanager/secrets":
                # Real secrets are never in the repository; its example directory is, and a
                # missing copy must fail loudly instead of being created empty.
                secrets_mounts += 1
                assert m.get("bind", {}).get("create_host_path") is False
                assert (REPO / source).parent.joinpath("secrets.example").is_dir()
                continue
            assert (REPO / source).exists(), f"{name}: {source} does not exist"
            assert m.get("read_only"), f"{name}: {source} should be mounted read-only"
    assert secrets_mounts == 1


def test_prometheus_finds_its_rules_and_targets_inside_compose():
    cfg = yaml.safe_load((REPO / "prometheus/prometheus.yml").read_text())
    config_mount = mount_for("prometheus", "/etc/prometheus/prometheus.yml")
    assert expand_defaults(config_mount["source"]) == "./prometheus/prometheus.yml"
    for pattern in cfg.get("rule_files", []):
        in_container = pattern if pattern.startswith("/") else f"/etc/prometheus/{pattern}"
        m = mount_for("prometheus", str(Path(in_container).parent))
        host_dir = REPO / m["source"] / Path(in_container).parent.relative_to(m["target"])
        assert list(host_dir.glob(Path(pattern).name)), f"no rule file matches {pattern} in {host_dir}"
    targets = [t for job in cfg["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    targets += [t for am in cfg.get("alerting", {}).get("alertmanagers", [])
                for sc in am.get("static_configs", []) for t in sc["targets"]]
    for target in targets:
        host, port = target.rsplit(":", 1)
        if host == "localhost":
            continue
        assert host in SERVICES, f"prometheus.yml dials {target}: no such service"
        assert int(port) in published_container_ports(host), f"{target}: {host} does not serve {port}"


def test_alertmanager_finds_its_templates_and_secret_files():
    cfg_text = (REPO / "alertmanager/alertmanager.yml").read_text()
    cfg = yaml.safe_load(cfg_text)
    for pattern in cfg.get("templates", []):
        in_container = pattern if pattern.startswith("/") else f"/etc/alertmanager/{pattern}"
        m = mount_for("alertmanager", str(Path(in_container).parent))
        assert list((REPO / m["source"]).glob(Path(pattern).name)), pattern
    secret_files = set(re.findall(r"/etc/alertmanager/secrets/([\w.-]+)", cfg_text))
    assert secret_files
    example = REPO / "alertmanager/secrets.example"
    missing = {f for f in secret_files if not (example / f).is_file()}
    assert not missing, f"secret files alertmanager.yml reads but secrets.example lacks: {sorted(missing)}"
    mount_for("alertmanager", "/etc/alertmanager/secrets/x")


def test_grafana_provisioning_matches_the_mounts():
    mount_for("grafana", "/etc/grafana/provisioning/datasources")
    providers = yaml.safe_load((REPO / "grafana/provisioning/dashboards/dashboards.yml").read_text())["providers"]
    for provider in providers:
        path = provider["options"]["path"]
        m = mount_for("grafana", path)
        assert list((REPO / m["source"]).glob("*.json")), f"no dashboards under {m['source']}"
    datasources = yaml.safe_load((REPO / "grafana/provisioning/datasources/datasources.yml").read_text())
    for ds in datasources["datasources"]:
        host_port = re.match(r"https?://([\w-]+):(\d+)", ds["url"])
        assert host_port and host_port.group(1) in SERVICES, ds["url"]
    # Grafana expands $VAR and ${VAR} in provisioning files ($$ is a literal $); comments aside.
    text = "\n".join(line.split("#", 1)[0] for line in
                     (REPO / "grafana/provisioning/datasources/datasources.yml").read_text().splitlines())
    env_used = {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", text.replace("$$", ""))}
    assert env_used <= set(SERVICES["grafana"]["environment"]), "grafana needs every variable its provisioning reads"


def test_demo_talks_to_the_exporter_service():
    command = " ".join(SERVICES["demo"]["command"])
    assert "--endpoint http://exporter:4318" in command and "--api http://exporter:8889" in command


# -- Dockerfiles -----------------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_dockerfile_is_slim_pinned_multistage_and_non_root(service):
    path = DOCKERFILES[service]
    ins = instructions(path)
    context = build_context(service)
    assert context / SERVICES[service]["build"].get("dockerfile", "Dockerfile") == path
    args = dict(a.split("=", 1) for k, a in ins if k == "ARG" and "=" in a)

    def resolve(token: str) -> str:
        m = re.fullmatch(r"\$\{?(\w+)\}?", token)
        return args[m.group(1)] if m else token
    bases = [resolve(a.split()[0]) for k, a in ins if k == "FROM"]
    assert len(bases) >= 2, "multi-stage: build wheels, then a runtime without build leftovers"
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), f"{base}: pin a python:3.11.x-slim tag"
    users = [a for k, a in ins if k == "USER"]
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any(k == "HEALTHCHECK" and a.startswith(("--", "CMD")) for k, a in ins)
    for k, a in ins:
        if k == "COPY" and "--from" not in a:
            for src in a.split()[:-1]:
                assert (context / src).exists(), f"{path}: COPY {src} not in the build context {context}"


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_dockerfile_healthcheck_matches_compose(service):
    ins = instructions(DOCKERFILES[service])
    healthcheck = next(a for k, a in ins if k == "HEALTHCHECK")
    command = healthcheck[healthcheck.index("CMD") + 3:].strip()
    assert yaml.safe_load(command) == SERVICES[service]["healthcheck"]["test"][1:]


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_build_context_leaves_the_virtualenv_out(service):
    context = build_context(service)
    if not (context / ".venv").exists() and context != REPO:
        return  # a package directory: nothing big to send
    # BuildKit reads <Dockerfile>.dockerignore first, then the context's .dockerignore.
    dockerfile = DOCKERFILES[service]
    candidates = [dockerfile.with_name(dockerfile.name + ".dockerignore"), context / ".dockerignore"]
    ignore = next((p for p in candidates if p.exists()), None)
    assert ignore is not None, f"{service}: the build would upload {context / '.venv'}"
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert "*" in patterns or ".venv" in patterns or ".venv/" in patterns


def build_context(service: str) -> Path:
    return (REPO / SERVICES[service]["build"]["context"]).resolve()
