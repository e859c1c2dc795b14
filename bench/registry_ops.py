"""Quick registry ops/s on a private Redis, next to ``redis-benchmark`` for scale.

``python -m bench.registry_ops [--seconds 3] [--workers 32]``: for each of register,
get_client and unregister, N concurrent workers loop for a few seconds through
``MeshClientRedisRegistry``; then ``redis-benchmark -t set,get -q -n 100000`` runs
against the same server. Numbers depend on the machine and its load: compare them
with each other, not across machines. (The full suite, with pinning and CPU/op, is
``python -m bench --only registry_ops``.)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

from meshsrpc import MeshClientRedisRegistry, RedisSettings
from meshsrpc.redis_server import RedisServer
from meshsrpc.settings import create_redis_client

METADATA = {"userId": "u-123", "room": "lobby", "tags": ["a", "b"]}


async def _rate(workers: int, seconds: float, op: Callable[[int, int], Awaitable[Any]]) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            await op(w, i)
            i += 1
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    return done / (time.perf_counter() - start)


async def measure(url: str, seconds: float, workers: int) -> dict[str, float]:
    """ops/s of register, get_client and unregister (each on its own clients)."""
    settings = RedisSettings(url=url, prefix="b")
    registry = MeshClientRedisRegistry[Any]("_mc:bench", redis=settings)
    raw = create_redis_client(settings)
    try:
        count: dict[int, int] = {}

        async def register(w: int, i: int) -> None:
            await registry.register(f"c{w}-{i}", 1, METADATA)
            count[w] = i + 1

        async def get(w: int, i: int) -> None:
            await registry.get_client(f"c{w}-{i % max(count.get(w, 1), 1)}")

        async def unregister(w: int, i: int) -> None:
            await registry.unregister(f"c{w}-{i}", 1)

        async def raw_hget(w: int, i: int) -> None:
            await raw.hget(registry.clients_key, f"c{w}-0")

        results = {"register": await _rate(workers, seconds, register)}
        results["get_client"] = await _rate(workers, seconds, get)
        results["unregister"] = await _rate(workers, seconds, unregister)
        # Baseline: a bare redis-py HGET from the same process, no registry work.
        results["raw HGET"] = await _rate(workers, seconds, raw_hget)
        return results
    finally:
        await registry.aclose()
        await raw.aclose()


def redis_benchmark(port: int) -> str:
    """``redis-benchmark -t set,get -q -n 100000`` output, or why it did not run."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return "redis-benchmark not installed"
    out = subprocess.run(
        [binary, "-t", "set,get", "-q", "-n", "100000", "-p", str(port)],
        capture_output=True,
        text=True,
        check=False,
    )
    return ", ".join(re.findall(r"(?:SET|GET): [\d.]+ requests per second", out.stdout))


def main() -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args()
    with RedisServer() as server:
        results = asyncio.run(measure(server.url, args.seconds, args.workers))
        for op, rate in results.items():
            print(f"{op:>12}: {rate:9.0f} ops/s  ({args.workers} concurrent, one process)")
        print(f"redis-benchmark: {redis_benchmark(server.port)}")


if __name__ == "__main__":
    main()
