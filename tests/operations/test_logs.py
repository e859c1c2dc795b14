"""Log lines operators rely on: stable ``extra=`` fields, nothing per message above DEBUG."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from meshsrpc import RedisSettings

from tests.cli.cli_support import start_node
from tests.generated.sgnl24.TestRpc import DNotifyRequest, UEchoRequest, UEchoResponse
from tests.mesh_server.mesh_server_support import eventually, join

pytestmark = pytest.mark.timeout(90)


async def test_a_node_death_is_logged_once_with_its_orphans(
    make_node: Any, make_client: Any, redis_settings: RedisSettings, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="meshsrpc")
    leader = await make_node(heartbeat_interval=0.1, node_ttl=2.0)
    await eventually(lambda: leader._mesh_client_service.mesh.is_leader, timeout=10)
    child = await start_node(redis_settings)
    try:
        client = make_client(_At(child.port), "orphan")
        await client.connect()

        async def registered() -> bool:
            return await leader.client_registry.get_client("orphan") is not None

        await eventually(registered, timeout=10)
        child.kill()

        def orphan_lines() -> list[Any]:
            return [r for r in caplog.records if getattr(r, "orphans", None) is not None]

        await eventually(orphan_lines, timeout=30)
    finally:
        child.kill()
        await child.process.wait()
    dead = [r for r in caplog.records if getattr(r, "dead_node_id", None) == child.node_id]
    assert [r.levelno for r in dead] == [logging.INFO, logging.INFO]  # the death, the orphans
    orphans = orphan_lines()[0]
    assert orphans.mesh_key == "app" and orphans.node_id == leader.mesh_instance_id
    assert orphans.orphans == 1


async def test_a_node_leaving_logs_one_line_with_its_fields(make_node: Any, caplog: Any) -> None:
    node = await make_node()
    node_id = node.mesh_instance_id
    caplog.set_level(logging.INFO, logger="meshsrpc.mesh_server")
    await node.mesh_stop()
    lines = [r for r in caplog.records if r.name == "meshsrpc.mesh_server"]
    assert len(lines) == 1
    assert (lines[0].mesh_key, lines[0].node_id, lines[0].clients) == ("app", node_id, 0)


async def test_calls_log_nothing_above_debug(make_node: Any, make_client: Any, caplog: Any) -> None:
    a, b = await make_node(), await make_node()
    a.register_message_handler("uEcho", lambda stream, req: UEchoResponse(message=req.message))
    c1, c2 = make_client(a, "c1"), make_client(b, "c2")
    await join(a, c1)
    await join(b, c2)
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="meshsrpc")
    for _ in range(20):
        await c1.invoke("uEcho", UEchoRequest(message="hi"))
        await a.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
        await a.invoke("c2", "dNotify", DNotifyRequest(notification="x"))
    assert [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG] == []


class _At:
    """Just enough of a node for make_client: its port."""

    def __init__(self, port: int) -> None:
        self.port = port
