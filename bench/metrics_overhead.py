"""What ``metrics=PrometheusMetrics()`` costs: the same MeshSrpcServer with and without it.

- SRPC echo: two echo servers (one process each, ``memory://`` mesh), identical but for
  the metrics; one load process alternates rounds between them (as srpc_echo does).
- Cross-node invoke: two A → B → client trios on private Redis servers, identical but
  for the metrics on A and B, measured in alternating rounds (as cross_node does).

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
    times,
)

NAME = "metrics_overhead"
TITLE = "PrometheusMetrics overhead (SRPC echo, cross-node invoke)"
TARGET = 0.95
LABELS = ("without metrics", "with metrics")


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
    """The echo pair, then the cross-node pair."""
    return [_echo(profile), _cross(profile)]


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
    result = BenchResult(f"{NAME}_echo", "SRPC echo (MeshSrpcServer): metrics on vs off")
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
