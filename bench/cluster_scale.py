"""Cluster scale: 1M registered clients over 200 simulated nodes on a local 3-primary cluster.

``python -m bench.cluster_scale [--clients N] [--nodes M] [--ops K]`` starts a private
Redis Cluster (3 primaries + 3 replicas) and a single Redis, and measures (issue 17):

- registry memory per client on each shard, keys and commands per primary (max/mean);
- register / get / unregister ops/s through the registry API, and Redis CPU per op,
  on the cluster and on the single instance;
- ``cleanup_node`` of a node holding 10,000 clients;
- ``iter_clients`` streaming every client, one bucket at a time.

The bulk load writes the cluster layout directly (pipelined, the values register.lua
writes): registering 1M clients one script call at a time would take longer than
every measurement together; register's own speed is measured separately.
Results go to ``bench/results/cluster_scale.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from meshsrpc import MeshClientRedisClusterRegistry, MeshClientRedisRegistry, RedisSettings
from meshsrpc.redis_cluster_server import RedisClusterServer
from meshsrpc.redis_server import RedisServer

KEY = "_mc:scale"
PREFIX = "scale"
CLEANUP_NODE = 1000
CLEANUP_SIZE = 10_000
BATCH = 5_000
CONCURRENCY = 64
OUT = Path(__file__).parent / "results"


def info(server: RedisServer, section: str) -> dict[str, str]:
    """INFO ``section`` of ``server`` as a dict (raw socket: no client needed)."""
    raw = b""
    import socket

    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(f"*2\r\n$4\r\nINFO\r\n${len(section)}\r\n{section}\r\n".encode())
        header = b""
        while not header.endswith(b"\r\n"):
            header += sock.recv(1)
        size = int(header[1:-2])
        while len(raw) < size + 2:
            raw += sock.recv(65536)
    pairs = {}
    for line in raw.decode().splitlines():
        if ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            pairs[key] = value
    return pairs


def cpu(server: RedisServer) -> float:
    stats = info(server, "cpu")
    return float(stats["used_cpu_user"]) + float(stats["used_cpu_sys"])


def commands(server: RedisServer) -> int:
    return int(info(server, "stats")["total_commands_processed"])


def memory(server: RedisServer) -> int:
    return int(info(server, "memory")["used_memory"])


def dbsize(server: RedisServer) -> int:
    reply = server.command("DBSIZE")
    return int(reply[1:].split(b"\r\n")[0])


def spread(values: list[float]) -> float:
    """max/mean."""
    mean = statistics.mean(values)
    return max(values) / mean if mean else 0.0


async def idle_cpu_per_s(servers: list[RedisServer], seconds: float = 3.0) -> float:
    """CPU seconds per second the servers use while nobody sends them anything."""
    before = sum(cpu(s) for s in servers)
    await asyncio.sleep(seconds)
    return (sum(cpu(s) for s in servers) - before) / seconds


async def bulk_load(
    registry: MeshClientRedisClusterRegistry[Any], clients: int, nodes: int
) -> dict[int, int]:
    """Write ``clients`` entries in the cluster layout; returns clients per bucket."""
    from redis.asyncio import RedisCluster

    cluster: RedisCluster = registry._redis
    await cluster.initialize()
    connected_at = int(time.time() * 1000)
    per_bucket: dict[int, int] = {}
    for start in range(0, clients, BATCH):
        pipe = cluster.pipeline(transaction=False)
        for i in range(start, min(start + BATCH, clients)):
            client_id = f"client-{i}"
            node_id = CLEANUP_NODE if i < CLEANUP_SIZE else 1 + i % nodes
            bucket = registry.bucket_of(client_id)
            per_bucket[bucket] = per_bucket.get(bucket, 0) + 1
            value = (
                f'{{"state":"active","nodeId":{node_id},"connectedAt":{connected_at},'
                f'"metadata":{{"userId":"u-{i}","room":"lobby"}},"hasMetadata":true}}'
            )
            pipe.hset(registry.clients_key(bucket), client_id, value)
            pipe.sadd(registry.node_key(bucket, node_id), client_id)
        await pipe.execute()
    return per_bucket


async def run_ops(backend: Any, ops: int, tag: str) -> dict[str, float]:
    """register, get, unregister of ``ops`` fresh clients each, CONCURRENCY at once."""
    rates: dict[str, float] = {}
    ids = [f"{tag}-{i}" for i in range(ops)]
    meta = {"userId": "u", "room": "lobby"}

    async def each(fn: Any) -> float:
        queue = iter(ids)

        async def worker() -> None:
            for client_id in queue:
                await fn(client_id)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return ops / (time.perf_counter() - began)

    rates["register"] = await each(lambda c: backend.register(c, 5, meta))
    rates["get"] = await each(backend.get_client)
    rates["unregister"] = await each(lambda c: backend.unregister(c, 5))
    return rates


async def measure(clients: int, nodes: int, ops: int) -> dict[str, Any]:
    result: dict[str, Any] = {"clients": clients, "nodes": nodes, "ops": ops}
    with RedisClusterServer() as cluster, RedisServer() as single, RedisServer() as replica:
        # The single instance gets a replica too: each cluster primary feeds one.
        replica.command("REPLICAOF", single.host, str(single.port))
        primaries = cluster.primaries()
        settings = RedisSettings(url=cluster.url, prefix=PREFIX)
        registry = MeshClientRedisClusterRegistry[Any](KEY, redis=settings)
        result["buckets"] = registry.buckets
        # Per-op Redis CPU before the load too: the single instance runs on an empty
        # registry, so this is the like-for-like figure.
        idle = await idle_cpu_per_s(primaries)
        cpu0 = sum(cpu(p) for p in primaries)
        began = time.perf_counter()
        await run_ops(registry, ops, "empty")
        busy = sum(cpu(p) for p in primaries) - cpu0 - idle * (time.perf_counter() - began)
        result["cluster_redis_cpu_us_per_op_empty"] = round(busy * 1e6 / (3 * ops), 1)
        mem_before = [memory(p) for p in primaries]
        began = time.perf_counter()
        per_bucket = await bulk_load(registry, clients, nodes)
        result["load_seconds"] = round(time.perf_counter() - began, 1)
        mem_after = [memory(p) for p in primaries]
        owner = {b: cluster.owner_of(registry.clients_key(b)).port for b in range(registry.buckets)}
        shard_clients = [
            sum(n for b, n in per_bucket.items() if owner[b] == p.port) for p in primaries
        ]
        result["shards"] = [
            {
                "port": p.port,
                "clients": shard_clients[i],
                "keys": dbsize(p),
                "memory_mb": round((mem_after[i] - mem_before[i]) / 2**20, 1),
                "bytes_per_client": round(
                    (mem_after[i] - mem_before[i]) / max(shard_clients[i], 1)
                ),
            }
            for i, p in enumerate(primaries)
        ]
        result["keys_max_over_mean"] = round(spread([s["keys"] for s in result["shards"]]), 3)
        result["clients_max_over_mean"] = round(spread(shard_clients), 3)

        # Operations on the cluster: rates, commands per primary, Redis CPU per op. The
        # idle CPU (cluster bus, replication pings, cron) is measured first and taken off.
        idle_cluster = await idle_cpu_per_s(primaries)
        cmd0, cpu0 = [commands(p) for p in primaries], sum(cpu(p) for p in primaries)
        began = time.perf_counter()
        rates = await run_ops(registry, ops, "cl")
        elapsed = time.perf_counter() - began
        cmd1, cpu1 = [commands(p) for p in primaries], sum(cpu(p) for p in primaries)
        per_primary = [b - a for a, b in zip(cmd0, cmd1, strict=True)]
        result["cluster_ops_per_s"] = {k: round(v) for k, v in rates.items()}
        result["commands_per_primary"] = per_primary
        result["commands_max_over_mean"] = round(spread(per_primary), 3)
        busy = cpu1 - cpu0 - idle_cluster * elapsed
        result["cluster_redis_cpu_us_per_op"] = round(busy * 1e6 / (3 * ops), 1)

        # The same on one Redis (the single-instance layout).
        single_registry = MeshClientRedisRegistry[Any](
            KEY, redis=RedisSettings(url=single.url, prefix=PREFIX)
        )
        idle_single = await idle_cpu_per_s([single])
        s_cpu0 = cpu(single)
        began = time.perf_counter()
        s_rates = await run_ops(single_registry, ops, "si")
        s_busy = cpu(single) - s_cpu0 - idle_single * (time.perf_counter() - began)
        result["single_ops_per_s"] = {k: round(v) for k, v in s_rates.items()}
        result["single_redis_cpu_us_per_op"] = round(s_busy * 1e6 / (3 * ops), 1)
        # What one primary could serve if Redis, not this 2-core load generator, were the
        # limit: 1 s of CPU / CPU per op.
        result["capacity_ratio_per_primary"] = round(
            result["single_redis_cpu_us_per_op"] / result["cluster_redis_cpu_us_per_op_empty"], 2
        )
        await single_registry.aclose()

        # cleanup_node of a node holding 10k clients.
        began = time.perf_counter()
        removed = await registry.cleanup_node(CLEANUP_NODE)
        result["cleanup_seconds"] = round(time.perf_counter() - began, 3)
        result["cleanup_removed"] = len(removed)

        # Stream every client, one bucket at a time.
        began = time.perf_counter()
        seen = largest = 0
        async for part in registry.iter_clients():
            seen += len(part)
            largest = max(largest, len(part))
        result["stream_seconds"] = round(time.perf_counter() - began, 1)
        result["stream_clients"] = seen
        result["stream_largest_bucket"] = largest
        await registry.aclose()
    return result


def write(result: dict[str, Any]) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / "cluster_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Cluster scale (bench/cluster_scale.py)",
        "",
        f"{result['clients']:,} clients, {result['nodes']} simulated nodes, "
        f"{result['buckets']} buckets, local cluster of 3 primaries + 3 replicas "
        "(one 2-core machine shared with the load generator).",
        "",
        "| shard | clients | keys | registry memory | bytes/client |",
        "|---|---|---|---|---|",
    ]
    for shard in result["shards"]:
        lines.append(
            f"| :{shard['port']} | {shard['clients']:,} | {shard['keys']:,} | "
            f"{shard['memory_mb']} MB | {shard['bytes_per_client']} |"
        )
    c, s = result["cluster_ops_per_s"], result["single_ops_per_s"]
    lines += [
        "",
        f"- keys max/mean over the primaries: {result['keys_max_over_mean']}; "
        f"clients max/mean: {result['clients_max_over_mean']}",
        f"- commands per primary during the ops: {result['commands_per_primary']} "
        f"(max/mean {result['commands_max_over_mean']})",
        f"- ops/s cluster (total) register {c['register']:,}, get {c['get']:,}, "
        f"unregister {c['unregister']:,}; single instance register {s['register']:,}, "
        f"get {s['get']:,}, unregister {s['unregister']:,}",
        f"- Redis CPU per op (idle CPU taken off; the primaries also feed their replicas): "
        f"cluster {result['cluster_redis_cpu_us_per_op_empty']} µs on an empty registry, "
        f"{result['cluster_redis_cpu_us_per_op']} µs with {result['clients']:,} loaded; "
        f"single instance (empty, with a replica) {result['single_redis_cpu_us_per_op']} µs; "
        f"per-primary capacity vs single instance (like for like, empty): "
        f"{result['capacity_ratio_per_primary']}x",
        f"- cleanup_node of {result['cleanup_removed']:,} clients: {result['cleanup_seconds']} s",
        f"- iter_clients: {result['stream_clients']:,} clients in "
        f"{result['stream_seconds']} s, largest bucket held {result['stream_largest_bucket']:,}",
        f"- bulk load: {result['load_seconds']} s",
        "",
    ]
    (OUT / "cluster_scale.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    """Run the simulation and write the results."""
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_scale", description=__doc__)
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--ops", type=int, default=20_000)
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.clients, args.nodes, args.ops))
    write(result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
