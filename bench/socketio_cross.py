"""python-socketio + AsyncRedisManager: server A ``call()``s a client held by server B.

The same 3-process layout as the meshsrpc cross-node benchmark. A holds no client
connection, so its manager never initialises itself; without
``sio.manager_initialized = True; sio.manager.initialize()`` A never listens on the
Redis channel and the ack never arrives.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .runner import ChildChannel, NotAvailable, measurement_loop

NAME = "socketio_cross_node"
TITLE = "python-socketio cross-node call (A -> client on B)"
CHANNEL = "meshsrpc-bench-socketio"
# redis-py's asyncio pool raises MaxConnectionsError past 100 connections (the
# manager then logs "Cannot publish to redis... retrying" and sleeps): give it room.
REDIS_OPTIONS = {"max_connections": 1000}


def _socketio() -> Any:
    try:
        import socketio
    except ImportError as exc:
        raise NotAvailable(
            f"python-socketio not installed ({exc}); pip install -e '.[bench]'"
        ) from exc
    return socketio


async def node_b(channel: ChildChannel, redis_url: str, port: int) -> None:
    """Server B: AsyncServer on aiohttp, holding the client."""
    socketio = _socketio()
    from aiohttp import web

    manager = socketio.AsyncRedisManager(redis_url, channel=CHANNEL, redis_options=REDIS_OPTIONS)
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    channel.send({"ready": True})
    await channel.recv()
    await runner.cleanup()


async def client(channel: ChildChannel, port: int) -> None:
    """The client: answers every "notify" with an ack."""
    socketio = _socketio()
    sio = socketio.AsyncClient(reconnection=False)

    @sio.on("notify")  # type: ignore[untyped-decorator]
    async def notify(data: Any) -> dict[str, bool]:
        return {"acknowledged": True}

    await sio.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
    channel.send({"ready": True, "sid": sio.get_sid()})
    await channel.recv()
    await sio.disconnect()


async def node_a(channel: ChildChannel, redis_url: str, sid: str, cpu_pids: dict[str, int]) -> None:
    """Server A: ``call("notify", to=sid)`` on command."""
    socketio = _socketio()
    manager = socketio.AsyncRedisManager(redis_url, channel=CHANNEL, redis_options=REDIS_OPTIONS)
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)
    sio.manager_initialized = True
    sio.manager.initialize()
    await asyncio.sleep(0.3)  # let the manager's listener subscribe

    async def call(_: int) -> None:
        ack = await sio.call("notify", {"notification": "ping"}, to=sid, timeout=10)
        assert ack == {"acknowledged": True}

    await call(0)  # the first ack proves the whole path works
    channel.send({"ready": True})
    await measurement_loop(channel, call, cpu_pids)
