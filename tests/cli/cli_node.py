"""A MeshSrpcServer node in its own process, for the ``meshsrpc`` command's tests.

Usage: python cli_node.py <redis url> <key prefix>. Prints ``<port> <instance id>``,
then serves until killed. Broadcasts of type ``note`` are printed as ``note <json>``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from meshsrpc import LeaderOptions, MeshSrpcServer, RedisSettings

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage


async def main(url: str, prefix: str) -> None:
    node: MeshSrpcServer[ClientMessage, ServerMessage, object] = MeshSrpcServer(
        ClientMessage,
        ServerMessage,
        mesh_key="app",
        redis=RedisSettings(url=url, prefix=prefix),
        heartbeat_interval=0.1,
        # Long enough that a loaded machine never declares a live node dead.
        node_ttl=2.0,
        request_timeout=2.0,
        leader=LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
        allow_unsigned=True,
    )

    def note(data: Any, sender: int) -> None:
        print("note", json.dumps({"data": data, "sender": sender}), flush=True)

    node.register_broadcast_handler("note", note)
    await node.listen("127.0.0.1", 0)
    await node.mesh_start()
    print(node.port, node.mesh_instance_id, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
