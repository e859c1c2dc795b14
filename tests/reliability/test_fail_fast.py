"""Issue 8: a call that cannot finish fails fast.

A call in flight to a client whose node is SIGKILLed fails no later than (about) the
moment the mesh removes that node, even with a long call timeout. (A call to a client
whose stream closes is covered by tests/mesh_server: ClientDisconnectedError within
1 s, local and remote; a killed or silent subscriber connection by tests/mesh.)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from meshsrpc import (
    LeaderOptions,
    MeshError,
    MeshSrpcServer,
    RedisSettings,
    SrpcClient,
)

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DNotifyRequest,
    DNotifyResponse,
    ServerMessage,
)
from tests.reliability.harness import EventLog, NodeProcess

HEARTBEAT = 0.1
NODE_TTL = 1.0


async def test_a_call_to_a_client_of_a_dying_node_fails_by_its_removal(
    redis_settings: RedisSettings, tmp_path: Path
) -> None:
    log = EventLog()
    doomed = await NodeProcess(
        redis_settings.url or "",
        redis_settings.key_prefix,
        log,
        tmp_path / "doomed.log",
        heartbeat=HEARTBEAT,
        ttl=NODE_TTL,
    ).start()
    caller: MeshSrpcServer[ClientMessage, ServerMessage, Any] = MeshSrpcServer(
        ClientMessage,
        ServerMessage,
        mesh_key="app",
        redis=redis_settings,
        heartbeat_interval=HEARTBEAT,
        node_ttl=NODE_TTL,
        request_timeout=2.0,
        leader=LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
        allow_unsigned=True,
    )
    await caller.mesh_start()
    client: SrpcClient[ClientMessage, ServerMessage] = SrpcClient(
        doomed.url, ClientMessage, ServerMessage, "held", enable_reconnect=False
    )
    called = asyncio.Event()

    async def hang(_request: DNotifyRequest) -> DNotifyResponse:
        called.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    client.register_message_handler("dNotify", hang)
    try:
        await client.connect()
        assert await log.wait_for(lambda: any(e.kind == "connected" for e in log.events), 5)
        call = asyncio.create_task(
            caller.invoke("held", "dNotify", DNotifyRequest(notification="x"), timeout=60.0)
        )
        await asyncio.wait_for(called.wait(), 5)
        doomed.kill()
        killed_at = time.monotonic()

        async def removed() -> float:
            mesh = caller._mesh_client_service.mesh
            while doomed.node_id in {n.instance_id for n in await mesh.get_nodes()}:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            return time.monotonic()

        removed_at = await asyncio.wait_for(removed(), 15)
        # Generous grace: a heartbeat or two after the removal, nothing like the 60 s.
        with pytest.raises(MeshError):
            async with asyncio.timeout(max(0.0, removed_at - time.monotonic()) + 1.5):
                await call
        print(
            f"\nremoved {removed_at - killed_at:.2f} s after the kill, "
            f"call failed {time.monotonic() - killed_at:.2f} s after it"
        )
    finally:
        await client.disconnect()
        await caller.mesh_stop()
        await caller.close()
        await doomed.close()
