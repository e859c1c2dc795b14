"""A MeshClientService node in a child process, for crash tests.

``python node_process.py <redis url> <prefix> <client id>...``: starts the node,
registers the clients, prints ``{"instanceId": n}`` and waits to be killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from meshsrpc import RedisSettings
from meshsrpc.client_service import MeshClientService
from service_nodes import FAST


async def _invoke(client_id: str, type: str, data: Any, timeout: float | None) -> Any:
    return data


async def main(url: str, prefix: str, clients: list[str]) -> None:
    service: MeshClientService[Any] = MeshClientService(
        "svc", _invoke, redis=RedisSettings(url=url, prefix=prefix), **FAST
    )
    await service.start()
    for client_id in clients:
        await service.register_client(client_id, {"c": client_id})
    print(json.dumps({"instanceId": service.instance_id}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
