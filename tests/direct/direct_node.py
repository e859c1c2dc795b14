"""A direct-capable MeshService in a child process, to be SIGKILLed.

``python direct_node.py <redis url> <prefix> <secret>``: joins mesh ``k``, prints
``{"instanceId": n}`` and serves: ``hold`` counts the delivery of ``data`` in the hash
``<prefix>:deliveries`` and never answers; ``pid`` answers the process id.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from direct_helpers import FAST
from meshsrpc import DirectSettings, MeshService, RedisSettings
from redis.asyncio import Redis


async def main(url: str, prefix: str, secret: str) -> None:
    counter = Redis.from_url(url)

    async def hold(data: Any) -> Any:
        await counter.hincrby(f"{prefix}:deliveries", str(data), 1)
        await asyncio.Event().wait()

    mesh = MeshService(
        "k",
        redis=RedisSettings(url=url, prefix=prefix),
        direct=DirectSettings(secret=secret),
        **FAST,
    )
    mesh.register_handler("hold", hold)
    mesh.register_handler("pid", lambda data: os.getpid())
    await mesh.start()
    print(json.dumps({"instanceId": mesh.instance_id}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
