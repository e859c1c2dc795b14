"""examples/deploy: the docker-compose file, the nginx config and the Kubernetes manifest
parse, and say what the README promises (three nodes, WebSocket proxying without
stickiness, probes, a preStop drain, proxy timeouts longer than the client's pings)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "examples" / "deploy"
# The client pings every 55 s; the server drops a stream silent for 75 s.
CLIENT_PING_INTERVAL = 55


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "docker-compose.yml").read_text()))


def _manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if doc]


def _seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s?", value)
    assert match, value
    return int(match.group(1))


def test_compose_runs_three_nodes_on_one_redis_behind_nginx() -> None:
    services = _compose()["services"]
    nodes = [name for name in services if name.startswith("node")]
    assert nodes == ["node1", "node2", "node3"]
    for name in nodes:
        env = services[name]["environment"]
        assert env["MESH_REDIS_URL"] == "redis://redis:6379/0"
        assert "SRPC_AUTH_SECRET" in env
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"])
    assert services["redis"]["image"].startswith("redis:")
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]


def test_compose_builds_the_dockerfile_next_to_it() -> None:
    build = _compose()["services"]["node1"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_nginx_proxies_websockets_round_robin_to_every_node() -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    code = re.sub(r"#.*", "", text)
    assert code.count("{") == code.count("}")
    upstream = re.search(r"upstream meshsrpc \{(.*?)\}", code, re.S)
    assert upstream is not None
    servers = re.findall(r"server (node\d):8000", upstream.group(1))
    assert servers == ["node1", "node2", "node3"]
    assert not re.search(r"\b(ip_hash|hash|sticky|least_conn)\b", upstream.group(1))
    assert "proxy_http_version 1.1;" in code
    assert "proxy_set_header Upgrade $http_upgrade;" in code
    assert "proxy_set_header Connection $connection_upgrade;" in code
    timeout = re.search(r"proxy_read_timeout (\w+);", code)
    assert timeout is not None and _seconds(timeout.group(1)) > CLIENT_PING_INTERVAL


def test_nginx_accepts_the_config_where_nginx_is_installed(tmp_path: Path) -> None:
    nginx = shutil.which("nginx")
    if nginx is None:
        return  # checked structurally above; nothing more to run here
    # The node hostnames only resolve inside compose: point them at loopback.
    config = re.sub(r"node\d:8000", "127.0.0.1:8000", (DEPLOY / "nginx.conf").read_text())
    (tmp_path / "nginx.conf").write_text(config)
    (tmp_path / "logs").mkdir()
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "pid x.pid;"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_kubernetes_runs_three_replicas_with_probes_and_a_prestop_drain() -> None:
    docs = _manifests()
    kinds = [(doc["kind"], doc["metadata"]["name"]) for doc in docs]
    assert ("Deployment", "meshsrpc") in kinds
    assert ("Service", "meshsrpc") in kinds
    assert ("Ingress", "meshsrpc") in kinds
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "meshsrpc"
    )
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    drain = container["lifecycle"]["preStop"]["exec"]["command"]
    assert drain[0] == "sleep" and int(drain[1]) > 0
    # The drain and the app's graceful shutdown (20 s) must fit in the grace period.
    assert pod["terminationGracePeriodSeconds"] >= int(drain[1]) + 20
    env = {item["name"]: item for item in container["env"]}
    assert env["SRPC_AUTH_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "meshsrpc"
    assert env["MESH_REDIS_URL"]["value"].startswith("redis://")


def test_kubernetes_ingress_keeps_quiet_websockets_open() -> None:
    ingress = next(d for d in _manifests() if d["kind"] == "Ingress")
    annotations = ingress["metadata"]["annotations"]
    timeout = annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]
    assert _seconds(timeout) > CLIENT_PING_INTERVAL
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert path["path"] == "/srpc"


def test_the_dockerfile_serves_the_fastapi_example_with_metrics() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "examples.fastapi_app.app:app" in text
    assert ".[metrics]" in text
    assert "--timeout-graceful-shutdown" in text
