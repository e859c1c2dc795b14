"""Scale: list_clients, list_clients_for_node and cleanup_node with 10k / 100k clients.

One process (on the load core) loads N clients of one node (pipelined, in the
WIRE.md format), times the registry backend's two reads and its cleanup, and
checks they saw all N.
"""

from __future__ import annotations

import time
from typing import Any

from . import wire
from .runner import BenchResult, Child, ChildChannel, Profile, children, private_redis

NAME = "scale"
TITLE = "Registry scale"
KEY = "_mc:benchscale"
PREFIX = "meshbench"
NODE_ID = 11
OTHER_NODE_ID = 12
METADATA = {"userId": "u-123", "room": "lobby"}
BATCH = 2_000


async def bulk_register(redis_url: str, size: int, others: int) -> None:
    """Write the clients straight in the WIRE.md section 2 format, pipelined.

    Setup only: registering 100k clients one script call at a time would take
    longer than the measurement; register's own speed is in registry_ops.
    """
    import json

    import redis.asyncio as aioredis

    base = f"{PREFIX}:mesh:{KEY}"
    connected_at = int(time.time() * 1000)
    client = aioredis.Redis.from_url(redis_url)
    for start in range(0, size + others, BATCH):
        pipe = client.pipeline(transaction=False)
        values: dict[str, str] = {}
        members: dict[int, list[str]] = {NODE_ID: [], OTHER_NODE_ID: []}
        for n in range(start, min(start + BATCH, size + others)):
            node = NODE_ID if n < size else OTHER_NODE_ID
            client_id = f"scale-{n}"
            # Key order as register.lua and the TypeScript nodes write it.
            values[client_id] = json.dumps(
                {"state": "active", "nodeId": node, "connectedAt": connected_at,
                 "metadata": METADATA, "hasMetadata": True},
                separators=(",", ":"),
            )  # fmt: skip
            members[node].append(client_id)
        pipe.hset(f"{base}:clients", mapping=values)
        for node, ids in members.items():
            if ids:
                pipe.sadd(f"{base}:node:{node}:clients", *ids)
        await pipe.execute()
    await client.aclose()


def check() -> None:
    """Needs MeshClientRedisRegistry."""
    wire.redis_registry_class()


async def measure(channel: ChildChannel, redis_url: str, sizes: list[int]) -> None:
    """Child: for each size, register, list, list for node, clean up."""
    from meshsrpc import RedisSettings

    registry = wire.redis_registry_class()(KEY, redis=RedisSettings(url=redis_url, prefix=PREFIX))
    out: list[dict[str, Any]] = []
    for size in sizes:
        # A few clients of another node, so the per-node read has something to skip.
        others = max(1, size // 100)
        t0 = time.perf_counter()
        await bulk_register(redis_url, size, others)
        register_s = time.perf_counter() - t0
        channel.progress(f"{size:,}: loaded in {register_s:.2f} s")

        t0 = time.perf_counter()
        listed = await registry.list_clients()
        list_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for_node = await registry.list_clients_for_node(NODE_ID)
        for_node_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        removed = await registry.cleanup_node(NODE_ID)
        cleanup_s = time.perf_counter() - t0
        await registry.cleanup_node(OTHER_NODE_ID)
        if len(listed) != size + others or len(for_node) != size or len(removed) != size:
            raise AssertionError(
                f"size {size}: listed {len(listed)}, for node {len(for_node)}, "
                f"removed {len(removed)}"
            )
        channel.progress(
            f"{size:,}: list_clients {list_s:.3f} s, list_clients_for_node {for_node_s:.3f} s, "
            f"cleanup_node {cleanup_s:.3f} s"
        )
        out.append(
            {
                "size": size,
                "list_clients_s": list_s,
                "list_clients_for_node_s": for_node_s,
                "cleanup_node_s": cleanup_s,
            }
        )
    await registry.aclose()
    channel.send({"results": out})


def run(profile: Profile) -> BenchResult:
    """One child against a fresh Redis."""
    result = BenchResult(NAME, TITLE)
    sizes = list(profile.scale_sizes)
    timeout = profile.ready_timeout + sum(sizes) / 1000 + 120
    with (
        private_redis() as redis_server,
        children(Child("scale", measure, role="load", redis_url=redis_server.url, sizes=sizes)) as (
            child,
        ),
    ):
        runs = child.recv(timeout)["results"]
    cleanup_100k = None
    for run_ in runs:
        size = run_["size"]
        result.figure(f"list_clients, {size:,} clients", run_["list_clients_s"], "s",
                      higher_is_better=False, clients=size)  # fmt: skip
        result.figure(f"list_clients_for_node, {size:,} clients",
                      run_["list_clients_for_node_s"], "s", higher_is_better=False,
                      clients=size)  # fmt: skip
        result.figure(f"cleanup_node, {size:,} clients", run_["cleanup_node_s"], "s",
                      higher_is_better=False, clients=size)  # fmt: skip
        if size == 100_000:
            cleanup_100k = run_["cleanup_node_s"]
    result.target(
        "cleanup_node of 100k clients < 2 s",
        cleanup_100k < 2.0 if cleanup_100k is not None else None,
        f"{cleanup_100k:.3f} s" if cleanup_100k is not None else "100k not in this profile",
    )
    return result
