"""Registry register/get/unregister ops/s vs redis-py EVALSHA of a trivial script.

One load process (on the load core) against a private Redis (on the server core).
The baseline uses a client made by ``create_redis_client`` with the same settings,
so it pays the same connection, pool and parsing costs: what remains is the
registry's own work (its script, JSON metadata, parsing). get_client is also set
against a bare HGET, and ``redis-benchmark`` gives the server's own rate, as in
bench/registry_ops.py (the registry's standalone quick check).
"""

from __future__ import annotations

from typing import Any

from . import wire
from .registry_ops import redis_benchmark
from .runner import (
    BenchResult,
    Child,
    ChildChannel,
    Profile,
    children,
    closed_loop,
    log,
    private_redis,
    summarise,
    times,
)

NAME = "registry_ops"
TITLE = "Registry ops (Redis backend)"
KEY = "_mc:bench"
PREFIX = "meshbench"
NODE_ID = 3
METADATA = {"userId": "u-123", "room": "lobby", "tags": ["a", "b"]}


def check() -> None:
    """Needs MeshClientRedisRegistry."""
    wire.redis_registry_class()


async def measure(
    channel: ChildChannel,
    redis_url: str,
    levels: list[int],
    warmup: float,
    duration: float,
    redis_pid: int | None,
    rounds: int,
) -> None:
    """Child: baseline and the three operations at each concurrency level."""
    from meshsrpc import RedisSettings
    from meshsrpc.settings import create_redis_client

    settings = RedisSettings(url=redis_url, prefix=PREFIX)
    registry = wire.redis_registry_class()(KEY, redis=settings)
    raw = create_redis_client(settings)
    trivial = raw.register_script("return 1")
    keys = [f"{PREFIX}:mesh:{KEY}:clients", f"{PREFIX}:mesh:{KEY}:node:{NODE_ID}:clients"]
    registered: list[str] = []
    counters: dict[int, int] = {}

    def next_id(worker: int) -> str:
        counters[worker] = counters.get(worker, 0) + 1
        return f"client-{worker}-{counters[worker]}"

    async def evalsha(worker: int) -> None:
        await trivial(keys=keys, args=[next_id(worker), NODE_ID, "{}", "1", "active"])

    async def hget(worker: int) -> None:
        # bench/registry_ops.py's read baseline: a bare HGET of the same hash.
        counters[worker] = counters.get(worker, 0) + 1
        await raw.hget(keys[0], registered[counters[worker] % len(registered)])

    async def register(worker: int) -> None:
        client_id = next_id(worker)
        await registry.register(client_id, NODE_ID, METADATA)
        registered.append(client_id)

    async def get(worker: int) -> None:
        counters[worker] = counters.get(worker, 0) + 1
        client_id = registered[(worker * 7919 + counters[worker]) % len(registered)]
        assert await registry.get_client(client_id) is not None

    async def unregister(worker: int) -> None:
        client_id = registered.pop() if registered else next_id(worker)
        await registry.unregister(client_id, NODE_ID)

    results: dict[str, list[dict[str, Any]]] = {}
    operations = (
        ("EVALSHA", evalsha),
        ("register", register),
        ("get_client", get),
        ("HGET", hget),
        ("unregister", unregister),
    )
    for level in levels:
        parts: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in operations}
        # Alternating rounds, so a burst of outside load hits every operation alike.
        for index in range(rounds):
            for label, fn in operations:
                part = await closed_loop(
                    level, fn, warmup=warmup if index == 0 else warmup / rounds,
                    duration=duration / rounds,
                    cpu_pids={"redis": redis_pid} if redis_pid else None, summarised=False,
                )  # fmt: skip
                parts[label].append(part)
        for label, label_parts in parts.items():
            result = summarise(label_parts)
            channel.progress(f"{label}, concurrency {level}: {result['throughput']:.0f} ops/s")
            results.setdefault(label, []).append(result)
        await registry.cleanup_node(NODE_ID)
        registered.clear()
    await registry.aclose()
    await raw.aclose()
    channel.send({"results": results})


def run(profile: Profile) -> BenchResult:
    """One child against a fresh Redis."""
    result = BenchResult(NAME, TITLE)
    levels = list(profile.registry_concurrency)
    timeout = profile.ready_timeout + 4 * len(levels) * (profile.warmup + profile.duration + 20)
    with private_redis() as redis_server, children(
        Child("registry", measure, role="load", redis_url=redis_server.url, levels=levels,
              redis_pid=redis_server.pid, rounds=profile.rounds, warmup=profile.warmup,
              duration=profile.duration)
    ) as (child,):  # fmt: skip
        runs = child.recv(timeout)["results"]
        if profile.name != "smoke":
            # What Redis itself does on this machine, for scale (registry_ops' tool).
            log(f"{NAME}: redis-benchmark -t set,get -q -n 100000")
            result.notes.append(
                f"redis-benchmark -t set,get -n 100000 on the same server: "
                f"{redis_benchmark(redis_server.port) or 'no output'}"
            )
    details, met = [], True
    for index, level in enumerate(levels):
        base = runs["EVALSHA"][index]
        result.add_load("EVALSHA", base)
        for op in ("register", "get_client", "unregister"):
            run_ = runs[op][index]
            result.add_load(op, run_)
            fig = result.figure(
                f"{op} ops/s, concurrency {level}", run_["throughput"], "ops/s",
                baseline=base["throughput"], baseline_name="EVALSHA trivial script",
                concurrency=level,
            )  # fmt: skip
            result.cpu_figure(
                f"{op} client CPU per op, concurrency {level}", run_, base, ["self"],
                "EVALSHA trivial script", concurrency=level,
            )  # fmt: skip
            result.cpu_figure(
                f"{op} Redis CPU per op, concurrency {level}", run_, base, ["redis"],
                "EVALSHA trivial script", concurrency=level,
            )  # fmt: skip
            if op == "get_client":
                result.figure(
                    f"get_client ops/s vs bare HGET, concurrency {level}", run_["throughput"],
                    "ops/s", baseline=runs["HGET"][index]["throughput"],
                    baseline_name="redis-py HGET (bench/registry_ops.py)", concurrency=level,
                )  # fmt: skip
            details.append(f"{op}@{level}: {times(fig['ratio'])}")
            met = met and fig["ratio"] is not None and fig["ratio"] >= 0.7
    result.target("registry ops/s >= 0.7x EVALSHA of a trivial script", met, ", ".join(details))
    return result
