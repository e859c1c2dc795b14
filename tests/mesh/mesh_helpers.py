"""Helpers of the mesh suite: fast timings, waiting for a condition, a child-process node."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

from meshsrpc import LeaderOptions, MeshService, RedisSettings
from meshsrpc.testing import FAST_DYING_MESH, eventually

__all__ = ["FAST", "FAST_LEADER", "MakeMesh", "eventually", "spawn_node_process", "stop_or_dump"]

# Short timings keep the suite fast; the ratios mirror the defaults.
FAST: dict[str, Any] = FAST_DYING_MESH
FAST_LEADER: LeaderOptions = FAST["leader"]

MakeMesh = Callable[..., Awaitable[MeshService]]


async def stop_or_dump(mesh: MeshService, timeout: float = 15.0) -> None:
    """Stop ``mesh``; if that hangs, print every task's stack and fail instead of hanging."""
    try:
        async with asyncio.timeout(timeout):
            await mesh.stop()
    except TimeoutError:
        for task in asyncio.all_tasks():
            print(f"--- task {task.get_name()}", file=sys.stderr)
            task.print_stack(file=sys.stderr)
        raise AssertionError(f"MeshService.stop() did not finish within {timeout} s") from None


def spawn_node_process(
    settings: RedisSettings, key: str, *, leader_ttl: float = 1.0
) -> tuple[subprocess.Popen[str], int]:
    """Start a MeshService in a child process (to be SIGKILLed); returns it and its id."""
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        from meshsrpc import LeaderOptions, MeshService, RedisSettings

        async def main():
            mesh = MeshService(
                {key!r},
                heartbeat_interval=0.1,
                node_ttl=0.6,
                leader=LeaderOptions(ttl={leader_ttl!r}, renewal_interval=0.2, retry_delay=0.1),
                redis=RedisSettings(url={settings.url!r}, prefix={settings.prefix!r}),
            )
            mesh.register_handler("ping", lambda data: "pong")
            await mesh.start()
            print(mesh.instance_id, flush=True)
            while True:
                print("leader" if mesh.is_leader else "follower", flush=True)
                await asyncio.sleep(0.05)

        asyncio.run(main())
        """
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError("child mesh node did not start")
    return process, int(line)
