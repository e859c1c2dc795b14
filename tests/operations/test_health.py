"""server.health() and the HealthApp probes: ready, not joined, Redis stopped."""

from __future__ import annotations

import json
from typing import Any

import pytest
from meshsrpc import MeshSrpcServer, RedisSettings
from meshsrpc.health import HealthApp, MeshHealth

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage
from tests.mesh_server.mesh_server_support import eventually, join

pytestmark = pytest.mark.timeout(90)


async def test_a_node_in_the_mesh_is_ready(make_node: Any, make_client: Any) -> None:
    node = await make_node()
    await join(node, make_client(node, "c1"))
    health = await node.health()
    assert health.ready
    assert health.mesh_joined and health.redis_reachable
    assert health.node_id == node.mesh_instance_id
    assert health.heartbeat_age is not None and health.heartbeat_age < health.node_ttl
    assert health.open_streams == 1
    assert health.error is None


async def test_the_only_node_becomes_the_leader(make_node: Any) -> None:
    node = await make_node()

    async def leading() -> bool:
        return (await node.health()).leader

    await eventually(leading, timeout=10)


async def test_a_node_not_joined_is_not_ready(redis_settings: RedisSettings) -> None:
    node: MeshSrpcServer[ClientMessage, ServerMessage, Any] = MeshSrpcServer(
        ClientMessage, ServerMessage, mesh_key="app", redis=redis_settings, allow_unsigned=True
    )
    health = await node.health()
    assert not health.ready
    assert not health.mesh_joined
    assert health.error == "not joined to the mesh"
    await node.close()


async def test_a_stopped_redis_makes_the_node_not_ready_until_it_is_back(
    make_node: Any, redis_server_factory: Any
) -> None:
    server = redis_server_factory()
    node = await make_node(redis=RedisSettings(url=server.url, prefix="health"))
    assert (await node.health()).ready
    server.stop()
    health = await node.health(timeout=2.0)
    assert not health.ready
    assert health.mesh_joined and not health.redis_reachable
    assert health.error is not None and health.error.startswith("Redis: ")
    server.start()

    async def ready_again() -> bool:
        return (await node.health()).ready

    await eventually(ready_again, timeout=30)


async def test_the_heartbeat_age_decides_readiness() -> None:
    fresh = MeshHealth(True, True, 1.0, 15.0, False, 1, 0)
    stale = MeshHealth(True, True, 15.0, 15.0, False, 1, 0)
    assert fresh.ready and not stale.ready


async def _get(app: HealthApp, path: str) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path}, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


async def test_readyz_answers_503_with_the_health_when_not_ready() -> None:
    async def check() -> MeshHealth:
        return MeshHealth(True, False, 3.0, 15.0, False, 2, 4, error="Redis: refused")

    status, body = await _get(HealthApp(check), "/readyz")
    assert status == 503
    assert body["status"] == "not ready"
    assert body["redis_reachable"] is False and body["error"] == "Redis: refused"


async def test_livez_answers_200_without_asking_redis() -> None:
    async def check() -> MeshHealth:
        raise AssertionError("liveness must not run the health check")

    assert await _get(HealthApp(check), "/livez") == (200, {"status": "live"})


async def test_readyz_answers_200_when_ready() -> None:
    async def check() -> MeshHealth:
        return MeshHealth(True, True, 0.1, 15.0, True, 1, 0)

    status, body = await _get(HealthApp(check), "/probes/readyz")
    assert status == 200 and body["ready"] is True and body["leader"] is True


async def test_other_paths_are_404() -> None:
    async def check() -> MeshHealth:
        raise AssertionError

    assert (await _get(HealthApp(check), "/elsewhere"))[0] == 404
