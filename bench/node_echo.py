"""SRPC echo per WebSocket transport, driven by a Node ``ws`` load generator.

What real clients see: the load comes from Node's ``ws`` package acting like the
TypeScript SrpcClient (signed query, answer to the first pingPong, uEcho request
frames, one in flight per connection; ``bench/node/echo_load.mjs``). In the same run
it drives the plain echo floors: a Node ``ws`` echo server (what the TypeScript server
runs on), a ``websockets`` echo and a ``picows`` echo. Servers run on the first core,
the load on the second (``taskset``). Each figure is the best of the profile's rounds.

Needs ``node`` and ``npm``; ``ws`` is installed into ``bench/node/node_modules`` on first
use. Without them the benchmark is reported as not available.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from . import srpc_echo, wire
from .runner import (
    BenchResult,
    Child,
    ChildChannel,
    NotAvailable,
    Profile,
    children,
    free_port,
    log,
    pinned_core,
    times,
)

NAME = "node_echo"
TITLE = "SRPC echo per transport vs plain echo floors, Node ws load"
NODE_DIR = Path(__file__).resolve().parent / "node"
MESSAGE = "hello from the meshsrpc benchmark"

# label -> (kind, server options); the order is the order of the tables.
SERVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Node ws echo": ("node", {}),
    "websockets echo": ("websockets-echo", {}),
    "picows echo": ("picows-echo", {}),
    "SRPC on websockets": ("srpc", {"transport": "websockets", "uvloop": False}),
    "SRPC on picows": ("srpc", {"transport": "picows", "uvloop": False}),
    "SRPC on picows + uvloop": ("srpc", {"transport": "picows", "uvloop": True}),
}


def _timings(profile: Profile) -> tuple[float, float, int]:
    """(warm-up, duration, rounds) of one load run: shorter than the Python benchmarks,
    since every server is measured at every level."""
    if profile.name == "smoke":
        return 0.05, 0.2, 1
    if profile.name == "quick":
        return 0.5, 1.5, 2
    return 1.0, 3.0, 3


def _taskset(role: str) -> list[str]:
    core = pinned_core(role)
    if core is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(core)]


def ensure_node() -> str:
    """The ``node`` binary, with ``ws`` installed next to the scripts; else NotAvailable."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise NotAvailable("node and npm are needed for the Node ws load generator")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        log(f"{NAME}: npm install (ws) into {NODE_DIR}")
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            raise NotAvailable(f"npm install ws failed: {proc.stderr.strip()[-300:]}")
    return node


def check() -> None:
    """Needs node/npm (ws), picows and the test schema."""
    ensure_node()
    wire.test_proto()
    try:
        import picows  # noqa: F401
    except ImportError as exc:
        raise NotAvailable(f"picows is not installed ({exc})") from exc


async def serve_srpc(channel: ChildChannel, port: int, transport: str, uvloop: bool) -> None:
    """Server process: SrpcServer with a uEcho handler on ``transport``."""
    proto = wire.test_proto()
    from meshsrpc import SrpcServer

    server = SrpcServer(proto.ClientMessage, proto.ServerMessage, auth_secret=wire.SECRET)

    async def echo(stream: Any, request: Any) -> Any:
        return proto.UEchoResponse(message=request.message)

    server.register_message_handler("uEcho", echo)
    await server.listen("127.0.0.1", port, transport=transport)
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    channel.send({"ready": True, "loop": loop})
    await channel.recv()
    await server.close()


async def serve_picows_echo(channel: ChildChannel, port: int) -> None:
    """Server process: a plain picows echo (the floor of the picows transport)."""
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            elif frame.msg_type is WSMsgType.BINARY:
                transport.send(WSMsgType.BINARY, frame.get_payload_as_bytes())

    server = await ws_create_server(lambda _request: Echo(), "127.0.0.1", port)
    channel.send({"ready": True})
    await channel.recv()
    server.close()


def _start_node_server(node: str, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*_taskset("server"), node, str(NODE_DIR / "echo_server.mjs"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("the Node ws echo server did not start")
    return proc


def _node_load(
    node: str, url: str, srpc: bool, clients: int, warmup: float, duration: float
) -> dict[str, Any]:
    options = {
        "url": url,
        "srpc": srpc,
        "clients": clients,
        "warmup": warmup,
        "duration": duration,
        "secret": wire.SECRET,
        "bodyHex": wire.echo_body(MESSAGE).hex(),
    }
    proc = subprocess.run(
        [*_taskset("load"), node, str(NODE_DIR / "echo_load.mjs"), json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=warmup + duration + 60,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"node load generator failed: {proc.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run(profile: Profile) -> BenchResult:
    """Every server up at once; per level, rounds alternate between them; best round kept."""
    node = ensure_node()
    warmup, duration, rounds = _timings(profile)
    levels = [c for c in profile.echo_concurrency if c <= 50]
    result = BenchResult(NAME, TITLE)
    ports = {label: free_port() for label in SERVERS}
    python_children: list[Child] = []
    labels: list[str] = []
    for label, (kind, options) in SERVERS.items():
        if kind == "srpc":
            python_children.append(
                Child(label, serve_srpc, role="server", port=ports[label], **options)
            )
        elif kind == "websockets-echo":
            python_children.append(
                Child(label, srpc_echo.serve_plain_echo, role="server", port=ports[label])
            )
        elif kind == "picows-echo":
            python_children.append(
                Child(label, serve_picows_echo, role="server", port=ports[label])
            )
        else:
            continue
        labels.append(label)
    node_server = None
    try:
        with children(*python_children) as servers:
            for label, server in zip(labels, servers, strict=True):
                ready = server.recv(profile.ready_timeout)
                if ready.get("loop"):
                    result.notes.append(f"{label}: event loop {ready['loop']}")
            node_server = _start_node_server(node, ports["Node ws echo"])
            best: dict[str, dict[int, dict[str, Any]]] = {label: {} for label in SERVERS}
            for level in levels:
                for _ in range(rounds):
                    for label, (kind, _options) in SERVERS.items():
                        url = f"ws://127.0.0.1:{ports[label]}/srpc"
                        run_ = _node_load(node, url, kind == "srpc", level, warmup, duration)
                        kept = best[label].get(level)
                        if kept is None or run_["throughput"] > kept["throughput"]:
                            best[label][level] = run_
                for label in SERVERS:
                    got = best[label][level]
                    log(
                        f"  {label}, c={level}: {got['throughput']:.0f} msg/s, "
                        f"p50 {got['p50_ms']:.3f} ms"
                    )
    finally:
        if node_server is not None:
            node_server.terminate()
            node_server.wait(10)
    _report(result, best, levels)
    result.notes.append(
        f"load: Node ws {_node_version(node)}, {rounds} round(s) of {duration} s per server "
        f"and level (best kept), servers on core {pinned_core('server')}, "
        f"load on core {pinned_core('load')}"
    )
    return result


def _node_version(node: str) -> str:
    try:
        return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def _report(
    result: BenchResult, best: dict[str, dict[int, dict[str, Any]]], levels: list[int]
) -> None:
    for label in SERVERS:
        for level in levels:
            result.add_load(label, best[label][level])
    node_floor, picows_floor = best["Node ws echo"], best["picows echo"]
    for level in levels:
        for label in ("SRPC on websockets", "SRPC on picows", "SRPC on picows + uvloop"):
            got = best[label][level]
            result.figure(
                f"{label}: throughput, {level} clients", got["throughput"], "req/s",
                baseline=node_floor[level]["throughput"], baseline_name="Node ws echo",
                concurrency=level,
            )  # fmt: skip
            result.figure(
                f"{label}: p50, {level} clients", got["p50_ms"], "ms",
                baseline=node_floor[level]["p50_ms"], baseline_name="Node ws echo",
                higher_is_better=False, concurrency=level,
            )  # fmt: skip
        for label in ("websockets echo", "picows echo"):
            got = best[label][level]
            result.figure(
                f"{label}: throughput, {level} clients", got["throughput"], "msg/s",
                baseline=node_floor[level]["throughput"], baseline_name="Node ws echo",
                concurrency=level,
            )  # fmt: skip
        fast = best["SRPC on picows"][level]
        result.figure(
            f"SRPC on picows vs plain picows echo: throughput, {level} clients",
            fast["throughput"], "req/s",
            baseline=picows_floor[level]["throughput"], baseline_name="picows echo",
            concurrency=level,
        )  # fmt: skip
    wide = [c for c in levels if c >= 10]
    fast_runs = best["SRPC on picows"]

    def ratio(level: int, floor: dict[int, dict[str, Any]]) -> float:
        return float(fast_runs[level]["throughput"]) / float(floor[level]["throughput"])

    if wide:
        result.target(
            "SRPC on picows >= 0.6x plain picows echo at 10 and 50 clients",
            all(ratio(c, picows_floor) >= 0.6 for c in wide),
            ", ".join(f"c={c}: {times(ratio(c, picows_floor))}" for c in wide),
        )
        result.target(
            "SRPC on picows >= 1.2x plain Node ws echo at 10 and 50 clients",
            all(ratio(c, node_floor) >= 1.2 for c in wide),
            ", ".join(f"c={c}: {times(ratio(c, node_floor))}" for c in wide),
        )
    if 1 in levels:
        mine, floor = fast_runs[1]["p50_ms"], node_floor[1]["p50_ms"]
        result.target(
            "SRPC on picows p50 at 1 client <= plain Node ws echo p50",
            mine is not None and floor is not None and mine <= floor,
            f"{mine:.3f} ms vs {floor:.3f} ms" if mine and floor else "n/a",
        )
