"""Prometheus metrics after a scripted scenario (the extra installed), and the runtime
without the extra."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from meshsrpc import ClientNotFoundError, RedisSettings, SrpcConflictError
from meshsrpc.metrics import PrometheusMetrics
from prometheus_client import CollectorRegistry

from tests.cli.cli_support import start_node
from tests.generated.sgnl24.TestRpc import DNotifyRequest, UEchoRequest, UEchoResponse
from tests.mesh_server.mesh_server_support import eventually, join

pytestmark = pytest.mark.timeout(120)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; 0 when absent."""
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_metrics_count_a_scripted_scenario_exactly(
    make_node: Any, make_client: Any, redis_settings: RedisSettings
) -> None:
    reg_a, reg_b = CollectorRegistry(), CollectorRegistry()
    # A is started first, so it is the leader that reports the dead node's orphans.
    a = await make_node(metrics=PrometheusMetrics(reg_a), heartbeat_interval=0.1, node_ttl=2.0)
    await eventually(lambda: a._mesh_client_service.mesh.is_leader, timeout=10)
    b = await make_node(metrics=PrometheusMetrics(reg_b))
    a.register_message_handler("uEcho", lambda stream, req: UEchoResponse(message=req.message))

    c1 = make_client(a, "c1")
    await join(a, c1)
    c2 = make_client(b, "c2")
    await join(b, c2)
    assert value(reg_a, "meshsrpc_connected_clients") == 1

    # client → server, served on A
    await c1.invoke("uEcho", UEchoRequest(message="hi"))
    # server → client from A: one local call, one forwarded to B, one to nobody
    await a.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
    await a.invoke("c2", "dNotify", DNotifyRequest(notification="x"))
    with pytest.raises(ClientNotFoundError):
        await a.invoke("ghost", "dNotify", DNotifyRequest(notification="x"))
    # c1 moves to B (takeover); a second c2 on A is refused (v2 conflict)
    moved = make_client(b, "c1")
    await join(b, moved, supersede=True)
    with pytest.raises(SrpcConflictError):
        await make_client(a, "c2").connect()
    # c2 leaves B for good
    await c2.disconnect()
    await eventually(lambda: value(reg_b, "meshsrpc_client_disconnects_total") == 1)
    # A third node dies with one client: the leader A reports it as orphaned
    child = await start_node(redis_settings)
    try:
        await make_client(_Listening(child.port), "orphan").connect()

        async def registered() -> bool:
            return await a.client_registry.get_client("orphan") is not None

        await eventually(registered, timeout=10)
        child.kill()
        await eventually(lambda: value(reg_a, "meshsrpc_orphaned_clients_total") == 1, timeout=30)
    finally:
        child.kill()
        await child.process.wait()

    assert value(reg_a, "meshsrpc_client_connects_total") == 1
    assert value(reg_b, "meshsrpc_client_connects_total") == 2
    assert value(reg_b, "meshsrpc_client_moves_total") == 1
    assert value(reg_a, "meshsrpc_client_conflicts_total") == 1
    assert value(reg_a, "meshsrpc_client_disconnects_total") == 0
    assert value(reg_a, "meshsrpc_connected_clients") == 0
    assert value(reg_b, "meshsrpc_connected_clients") == 1
    served = {"call": "uEcho", "outcome": "ok"}
    assert value(reg_a, "meshsrpc_rpc_served_seconds_count", **served) == 1
    assert value(reg_a, "meshsrpc_rpc_served_seconds_sum", **served) > 0
    calls = {"call": "dNotify"}
    assert (
        value(reg_a, "meshsrpc_client_call_seconds_count", **calls, place="local", outcome="ok")
        == 1
    )
    assert (
        value(reg_a, "meshsrpc_client_call_seconds_count", **calls, place="remote", outcome="ok")
        == 1
    )
    assert (
        value(
            reg_a,
            "meshsrpc_client_call_seconds_count",
            **calls,
            place="remote",
            outcome="not_found",
        )
        == 1
    )
    assert (
        value(reg_a, "meshsrpc_client_call_seconds_sum", **calls, place="remote", outcome="ok") > 0
    )
    # The forward to B: one request out of A and its reply in; the mirror image on B.
    assert value(reg_a, "meshsrpc_mesh_messages_total", direction="out", kind="request") >= 1
    assert value(reg_b, "meshsrpc_mesh_messages_total", direction="in", kind="request") >= 1
    assert value(reg_b, "meshsrpc_mesh_messages_total", direction="out", kind="reply") >= 1
    assert value(reg_a, "meshsrpc_mesh_messages_total", direction="in", kind="reply") >= 1
    assert value(reg_a, "meshsrpc_leader_changes_total", became="true") == 1
    assert value(reg_a, "meshsrpc_leader") == 1
    assert value(reg_a, "meshsrpc_registry_errors_total", operation="register") == 0


class _Listening:
    """Just enough of a node for make_client: its port."""

    def __init__(self, port: int) -> None:
        self.port = port


async def test_a_restored_redis_subscription_counts_a_reconnect(
    make_node: Any, redis_server_factory: Any
) -> None:
    server = redis_server_factory()
    registry = CollectorRegistry()
    await make_node(
        redis=RedisSettings(url=server.url, prefix="reconnect"),
        metrics=PrometheusMetrics(registry),
    )
    server.restart()
    await eventually(lambda: value(registry, "meshsrpc_redis_reconnects_total") == 1, timeout=30)


async def test_a_failed_registry_write_counts_a_registry_error(
    make_node: Any, make_client: Any, redis_server_factory: Any
) -> None:
    server = redis_server_factory()
    registry = CollectorRegistry()
    node = await make_node(
        redis=RedisSettings(url=server.url, prefix="errors"), metrics=PrometheusMetrics(registry)
    )
    server.stop()
    client = make_client(node, "c1")
    with pytest.raises(Exception):  # noqa: B017 - refused or closed, either way
        await client.connect()
    await eventually(
        lambda: value(registry, "meshsrpc_registry_errors_total", operation="reserve") == 1,
        timeout=30,
    )


def test_the_runtime_works_without_prometheus_client() -> None:
    script = """
import sys
sys.modules["prometheus_client"] = None  # as if the extra were not installed
import meshsrpc, meshsrpc.metrics
from meshsrpc import MeshSrpcServer
from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage
MeshSrpcServer(ClientMessage, ServerMessage, mesh_key="k", redis="memory://x", allow_unsigned=True)
try:
    meshsrpc.metrics.PrometheusMetrics()
except ImportError as exc:
    print(exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'meshsrpc[metrics]'" in result.stdout


def test_metrics_live_only_in_the_metrics_module() -> None:
    script = """
import sys
import meshsrpc, meshsrpc.mesh_server, meshsrpc.cli
print("prometheus_client" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "False", result.stderr


def test_latency_buckets_are_cumulative() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    for seconds in (0.00005, 0.0003, 0.0003, 20.0):
        metrics.rpc_served("uEcho", "ok", seconds)
    labels = {"call": "uEcho", "outcome": "ok"}
    assert value(registry, "meshsrpc_rpc_served_seconds_bucket", le="0.0001", **labels) == 1
    assert value(registry, "meshsrpc_rpc_served_seconds_bucket", le="0.0005", **labels) == 3
    assert value(registry, "meshsrpc_rpc_served_seconds_bucket", le="10.0", **labels) == 3
    assert value(registry, "meshsrpc_rpc_served_seconds_bucket", le="+Inf", **labels) == 4
    assert value(registry, "meshsrpc_rpc_served_seconds_count", **labels) == 4
    assert value(registry, "meshsrpc_rpc_served_seconds_sum", **labels) == pytest.approx(20.00065)


def test_two_metrics_objects_cannot_share_a_registry() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusMetrics(registry)
