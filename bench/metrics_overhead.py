"""What ``metrics=PrometheusMetrics()`` costs: the same MeshSrpcServer with and without it.

- SRPC echo: two echo servers (one process each, ``memory://`` mesh), identical but for
  the metrics; one load process alternates rounds between them (as srpc_echo does).
- Cross-node invoke: two A → B → client trios on private Redis servers, identical but
  for the metrics on A and B, measured in alternating rounds (as cross_node does).

Throughput across processes swings by tens of percent on a machine shared with
other work, far more than the hooks can cost, so a third measure settles it:
``toggled``, one process holding the server(s) and the clients, switching the metrics
on and off every ``SLICE`` seconds under the same load; the CPU per operation of both
halves is compared (drift hits both alike).

Targets: with metrics, throughput >= 0.95x without, at every level; the same for CPU
per operation (server for echo, A + B for cross-node), which a machine shared with
other work disturbs far less than throughput. The hooks' own cost per operation is
timed in-process too (``hook cost``), without any I/O around it.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from . import cross_node, srpc_echo, wire
from .runner import (
    BenchResult,
    Child,
    ChildChannel,
    Profile,
    alternate,
    children,
    free_port,
    private_redis,
    times,
)

NAME = "metrics_overhead"
TITLE = "PrometheusMetrics overhead (SRPC echo, cross-node invoke)"
TARGET = 0.95
LABELS = ("without metrics", "with metrics")
SLICE = 0.05


async def serve_mesh_echo(channel: ChildChannel, port: int, metrics: bool) -> None:
    """Server process: MeshSrpcServer (memory:// mesh) with a uEcho handler on ``port``."""
    proto = wire.test_proto()
    server_class = wire.mesh_srpc_server_class()
    options: dict[str, Any] = {"metrics": wire.prometheus_metrics()} if metrics else {}
    server = server_class(
        proto.ClientMessage,
        proto.ServerMessage,
        mesh_key="echo",
        redis=f"memory://bench-{uuid.uuid4().hex[:8]}",
        auth_secret=wire.SECRET,
        **options,
    )

    async def echo(stream: Any, request: Any) -> Any:
        return proto.UEchoResponse(message=request.message)

    server.register_message_handler("uEcho", echo)
    await server.mesh_start()
    listening = await wire.start_listening(server, "127.0.0.1", port)
    channel.send({"ready": True})
    await channel.recv()
    await server.mesh_stop()
    await server.close()
    listening.cancel()


def check() -> None:
    """Needs MeshSrpcServer, the test schema and prometheus-client."""
    wire.test_proto()
    wire.mesh_srpc_server_class()
    wire.prometheus_metrics()


def run(profile: Profile) -> list[BenchResult]:
    """The echo pair, the cross-node pair, then metrics toggled in one process."""
    return [_echo(profile), _cross(profile), _toggled(profile)]


async def toggled(channel: ChildChannel, redis_url: str, levels: list[int], seconds: float) -> None:
    """One process: an echo server, nodes A and B, their clients; metrics switched on and
    off every SLICE seconds while ``level`` callers run, for each workload and level."""
    import asyncio

    from meshsrpc import RedisSettings

    proto = wire.test_proto()
    server_class = wire.mesh_srpc_server_class()
    metrics = wire.prometheus_metrics()

    def node(redis: Any) -> Any:
        return server_class(
            proto.ClientMessage, proto.ServerMessage, mesh_key="toggle", redis=redis,
            auth_secret=wire.SECRET,
        )  # fmt: skip

    echo = node(f"memory://toggle-{uuid.uuid4().hex[:8]}")
    echo.register_message_handler(
        "uEcho", lambda stream, request: proto.UEchoResponse(message=request.message)
    )
    settings = RedisSettings(url=redis_url, prefix="toggle")
    a, b = node(settings), node(settings)
    servers = (echo, a, b)
    for server in servers:
        await server.mesh_start()
    echo_port, b_port = free_port(), free_port()
    listening = [
        await wire.start_listening(echo, "127.0.0.1", echo_port),
        await wire.start_listening(b, "127.0.0.1", b_port),
    ]
    client = await wire.connect_raw(f"ws://127.0.0.1:{b_port}/srpc", "toggle-client")
    answering = asyncio.create_task(wire.answer_notify_requests(client))
    while await a.client_registry.get_client("toggle-client") is None:  # noqa: ASYNC110 - polls Redis
        await asyncio.sleep(0.05)

    def switch(on: bool) -> None:
        for server in servers:
            server._mesh_metrics = metrics if on else None
            server._mesh_client_service.observer = metrics if on else None

    body = wire.echo_body(srpc_echo.MESSAGE)
    notify = proto.DNotifyRequest(notification="ping")
    results: dict[str, list[dict[str, Any]]] = {"echo": [], "cross": []}
    for workload in ("echo", "cross"):
        for level in levels:
            done = [0]
            stop = asyncio.Event()
            conns = (
                [await wire.connect_raw(f"ws://127.0.0.1:{echo_port}/srpc", f"t-{level}-{i}")
                 for i in range(level)]
                if workload == "echo" else []
            )  # fmt: skip

            async def caller(
                worker: int,
                conns: list[Any] = conns,
                stop: asyncio.Event = stop,
                done: list[int] = done,
            ) -> None:
                sent = 0
                while not stop.is_set():
                    sent += 1
                    if conns:
                        frame = wire.with_request_id(f"{worker}-{sent}", body)
                        await wire.call(conns[worker], frame)
                    else:
                        await a.invoke("toggle-client", "dNotify", notify)
                    done[0] += 1

            tasks = [asyncio.create_task(caller(i)) for i in range(level)]
            await asyncio.sleep(min(0.5, seconds / 4))  # warm up
            totals = {True: [0, 0.0, 0.0], False: [0, 0.0, 0.0]}  # ops, cpu s, wall s
            slices = max(2, int(seconds / SLICE))
            for index in range(slices):
                # on, off, off, on, on, off, ...: neither half always goes first
                on = (index % 4) in (0, 3)
                switch(on)
                ops, cpu, wall = done[0], time.process_time(), time.perf_counter()
                await asyncio.sleep(SLICE)
                totals[on][0] += done[0] - ops
                totals[on][1] += time.process_time() - cpu
                totals[on][2] += time.perf_counter() - wall
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for conn in conns:
                await conn.close()
            switch(False)
            row: dict[str, Any] = {"concurrency": level}
            for on, (ops, cpu, wall) in totals.items():
                key = "with" if on else "without"
                row[f"{key}_cpu_us_per_op"] = cpu / ops * 1e6 if ops else None
                row[f"{key}_throughput"] = ops / wall if wall else None
            results[workload].append(row)
            channel.progress(
                f"toggled {workload}, {level} in flight: CPU/op "
                f"{row['without_cpu_us_per_op']:.1f} us off, {row['with_cpu_us_per_op']:.1f} us on"
            )
    answering.cancel()
    await client.close()
    for task in listening:
        task.cancel()
    for server in servers:
        await server.mesh_stop()
        await server.close()
    channel.send({"results": results})


def hook_cost_us(iterations: int = 100_000) -> dict[str, float]:
    """Microseconds the metrics hooks add per echo request and per cross-node invoke
    (A's and B's hooks together), timed in this process."""
    metrics = wire.prometheus_metrics()
    clock = time.perf_counter

    def echo() -> None:
        started = clock()
        metrics.rpc_served("uEcho", "ok", clock() - started)

    def cross() -> None:
        started = clock()  # A: the call, its request out, its reply in
        metrics.mesh_message_out("request")
        metrics.mesh_message_in("reply")
        metrics.client_called("dNotify", "remote", "ok", clock() - started)
        metrics.mesh_message_in("request")  # B: the request in, the reply out, the local call
        metrics.mesh_message_out("reply")
        started = clock()
        metrics.client_called("dNotify", "local", "ok", clock() - started)

    costs: dict[str, float] = {}
    for name, hooks in (("echo", echo), ("cross", cross)):
        for _ in range(1000):
            hooks()
        started = clock()
        for _ in range(iterations):
            hooks()
        costs[name] = (clock() - started) / iterations * 1e6
    return costs


def _echo(profile: Profile) -> BenchResult:
    result = BenchResult(NAME, "SRPC echo (MeshSrpcServer): metrics on vs off")
    levels = list(profile.echo_concurrency)
    timeout = profile.ready_timeout + len(levels) * (2 * (profile.warmup + profile.duration) + 60)
    ports = {label: free_port() for label in LABELS}
    with children(
        *(
            Child(f"echo server, {label}", serve_mesh_echo, role="server", port=ports[label],
                  metrics=label == "with metrics")
            for label in LABELS
        )
    ) as servers:  # fmt: skip
        for server in servers:
            server.recv(profile.ready_timeout)
        targets = {
            label: (f"ws://127.0.0.1:{ports[label]}/srpc", True, server.pid)
            for label, server in zip(LABELS, servers, strict=True)
        }
        with children(
            Child("load", srpc_echo.generate_load, role="load", targets=targets, levels=levels,
                  warmup=profile.warmup, duration=profile.duration, rounds=profile.rounds)
        ) as (load,):  # fmt: skip
            runs = load.recv(timeout)["results"]
    _compare(result, runs["without metrics"], runs["with metrics"], "clients", ["server"])
    _hooks(result, "echo", runs["without metrics"], ["server"])
    return result


def _cross(profile: Profile) -> BenchResult:
    result = BenchResult(f"{NAME}_cross", "Cross-node invoke (A -> client on B): metrics on vs off")
    levels = list(profile.cross_concurrency)
    with contextlib.ExitStack() as stack:
        variants: dict[str, Child] = {}
        for label in LABELS:
            metrics = label == "with metrics"
            variants[label] = cross_node._start_trio(
                stack, f"meshsrpc, {label}", profile,
                lambda url, port, m=metrics: Child(
                    "meshsrpc B", cross_node.mesh_node_b, role="server", redis_url=url,
                    port=port, metrics=m),
                lambda port, _: Child(
                    "SRPC client", cross_node.srpc_client, role="load",
                    url=f"ws://127.0.0.1:{port}/srpc", client_id=cross_node.CLIENT_ID),
                lambda url, pids, _, m=metrics: Child(
                    "meshsrpc A", cross_node.mesh_node_a, role="load", redis_url=url,
                    cpu_pids=pids, metrics=m),
            )  # fmt: skip
        runs = alternate(variants, levels, profile)
    _compare(result, runs["without metrics"], runs["with metrics"], "in flight", ["self", "B"])
    _hooks(result, "cross", runs["without metrics"], ["self", "B"])
    return result


def _toggled(profile: Profile) -> BenchResult:
    result = BenchResult(f"{NAME}_toggled", "Metrics switched on/off in one process under load")
    levels = sorted({1, *profile.cross_concurrency[1:2]})
    seconds = profile.duration * max(1, profile.rounds)
    with private_redis() as redis_server, children(
        Child("toggled", toggled, role="server", redis_url=redis_server.url, levels=levels,
              seconds=seconds)
    ) as (child,):  # fmt: skip
        runs = child.recv(profile.ready_timeout + 2 * len(levels) * (seconds + 30))["results"]
    met = True
    details = []
    for workload, rows in runs.items():
        for row in rows:
            level = row["concurrency"]
            fig = result.figure(
                f"{workload} CPU per op, {level} in flight", row["with_cpu_us_per_op"],
                "us CPU/op", baseline=row["without_cpu_us_per_op"],
                baseline_name="metrics off (same process, same load)",
                higher_is_better=False, concurrency=level,
            )  # fmt: skip
            result.figure(
                f"{workload} throughput, {level} in flight", row["with_throughput"], "ops/s",
                baseline=row["without_throughput"],
                baseline_name="metrics off (same process, same load)", concurrency=level,
            )  # fmt: skip
            met = met and fig["ratio"] is not None and fig["ratio"] <= 2 - TARGET
            details.append(f"{workload} {level}: {times(fig['ratio'])}")
    result.target(
        f"CPU per op with metrics <= {2 - TARGET:.2f}x without (toggled)", met, ", ".join(details)
    )
    return result


def _hooks(result: BenchResult, kind: str, without: list[dict[str, Any]], cpu: list[str]) -> None:
    cost = hook_cost_us()[kind]
    for base in without:
        per_op = sum(base.get("cpu_us_per_op", {}).get(p) or 0.0 for p in cpu)
        result.figure(
            f"hook cost / CPU per op, {base['concurrency']}", cost, "us",
            baseline=per_op or None, baseline_name="CPU per op without metrics",
            higher_is_better=False, concurrency=base["concurrency"],
        )  # fmt: skip
    result.notes.append(f"metrics hooks: {cost:.2f} us per operation (timed in-process)")


def _compare(
    result: BenchResult,
    without: list[dict[str, Any]],
    with_metrics: list[dict[str, Any]],
    what: str,
    cpu: list[str],
) -> None:
    met = cpu_met = True
    for base, run_ in zip(without, with_metrics, strict=True):
        level = run_["concurrency"]
        result.add_load("without metrics", base)
        result.add_load("with metrics", run_)
        fig = result.figure(
            f"throughput, {level} {what}", run_["throughput"], "ops/s",
            baseline=base["throughput"], baseline_name="same server without metrics",
            concurrency=level,
        )  # fmt: skip
        result.figure(
            f"p50, {level} {what}", run_["p50_ms"], "ms", baseline=base["p50_ms"],
            baseline_name="same server without metrics", higher_is_better=False,
            concurrency=level,
        )  # fmt: skip
        cpu_fig = result.cpu_figure(
            f"CPU per op, {level} {what}", run_, base, cpu, "same server without metrics",
            concurrency=level,
        )  # fmt: skip
        met = met and fig["ratio"] is not None and fig["ratio"] >= TARGET
        cpu_met = cpu_met and cpu_fig["ratio"] is not None and cpu_fig["ratio"] <= 2 - TARGET
    ratios = ", ".join(
        f"{f['params']['concurrency']} {what}: {times(f['ratio'])}"
        for f in result.figures
        if f["name"].startswith("throughput") and f["ratio"] is not None
    )
    result.target(f"throughput with metrics >= {TARGET}x without", met, ratios)
    cpu_ratios = ", ".join(
        f"{f['params']['concurrency']} {what}: {times(f['ratio'])}"
        for f in result.figures
        if f["name"].startswith("CPU per op") and f["ratio"] is not None
    )
    result.target(f"CPU per op with metrics <= {2 - TARGET:.2f}x without", cpu_met, cpu_ratios)
