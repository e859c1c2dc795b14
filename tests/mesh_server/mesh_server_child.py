"""A MeshSrpcServer node in its own process, for tests that SIGKILL a node.

Usage: python -m tests.mesh_server.mesh_server_child <redis url> <key prefix> [<node ttl>],
from the repository root (see ``meshsrpc.testing.spawn_child``). Prints the listening
port and the mesh instance id on one line, then serves until killed. With a node ttl,
the node runs with that ttl and the default (scaled) leader timings.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from meshsrpc import LeaderOptions, MeshSrpcServer, RedisSettings

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage


async def main(url: str, prefix: str, node_ttl: float | None) -> None:
    timings: dict[str, Any] = {
        "heartbeat_interval": 0.1,
        "node_ttl": 0.6,
        "leader": LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
    }
    if node_ttl is not None:
        timings = {"heartbeat_interval": node_ttl / 5, "node_ttl": node_ttl}
    node: MeshSrpcServer[ClientMessage, ServerMessage, object] = MeshSrpcServer(
        ClientMessage,
        ServerMessage,
        mesh_key="app",
        redis=RedisSettings(url=url, prefix=prefix),
        request_timeout=2.0,
        allow_unsigned=True,
        **timings,
    )
    await node.listen("127.0.0.1", 0)
    await node.mesh_start()
    print(node.port, node.mesh_instance_id, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else None))
