"""``make demo``: three presence nodes, five clients, one Redis, and a node that dies.

Starts a private Redis (or uses ``MESH_REDIS_URL``), three node processes on loopback
ports and five clients, then walks through: calling a client on node 1 from node 3, a
broadcast to every node, metadata changed from another node, a client moving to another
node, node 2 killed and its clients reported once by the leader, and the final registry.
Every step prints what happened, on which node, and how long it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from meshsrpc import RedisSettings
from meshsrpc.redis_server import RedisServer, free_port
from meshsrpc.settings import create_redis_client

from .presence.client import PresenceClient
from .presence.cluster import Cluster, NodeEvent, NodeProcess
from .presence.generated.presence import Status

__all__ = ["DemoReport", "main", "run_demo"]

CLIENTS = {"alice": "node1", "bob": "node1", "carol": "node2", "dave": "node2", "erin": "node3"}


@dataclass
class DemoReport:
    """The facts the demo established, for tests and for whoever embeds it."""

    node_ids: dict[str, int] = field(default_factory=dict)
    events: list[NodeEvent] = field(default_factory=list)
    invoke: dict[str, Any] = field(default_factory=dict)
    broadcast_receivers: list[str] = field(default_factory=list)
    clients_notified: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    supersede: dict[str, Any] = field(default_factory=dict)
    orphaned: list[NodeEvent] = field(default_factory=list)
    dead_node_calls: dict[str, Any] = field(default_factory=dict)
    final_clients: list[dict[str, Any]] = field(default_factory=list)
    presence: dict[str, Any] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)
    seconds: float = 0.0


class Transcript:
    """Timestamped, aligned lines: ``  1.23s  node3   text``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()
        self.tty = out.isatty()

    def line(self, where: str, text: str) -> None:
        self.out.write(f"{time.monotonic() - self.t0:7.2f}s  {where:<7} {text}\n")
        self.out.flush()

    def section(self, title: str) -> None:
        self.out.write(f"\n== {title}\n")
        self.out.flush()

    def table(self, rows: list[tuple[str, ...]]) -> None:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        self.out.write("\n")
        for row in rows:
            cells = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.out.write(f"{' ' * 10}{cells.rstrip()}\n")
        self.out.flush()

    def progress(self, text: str, *, final: bool = False) -> None:
        if self.tty:
            self.out.write(f"\r{' ' * 10}{text}\033[K" + ("\n" if final else ""))
        else:
            self.out.write(f"{' ' * 10}{text}\n")
        self.out.flush()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def run_demo(
    redis_url: str,
    *,
    out: TextIO = sys.stdout,
    heartbeat: float = 1.0,
    node_ttl: float = 3.0,
    prefix: str | None = None,
) -> DemoReport:
    """Run the whole scenario against ``redis_url`` and return what happened."""
    report = DemoReport()
    say = Transcript(out)
    started = time.monotonic()
    cluster = Cluster(
        redis_url,
        prefix or f"demo{uuid.uuid4().hex[:8]}",
        heartbeat=heartbeat,
        node_ttl=node_ttl,
        request_timeout=max(2.0, node_ttl),
    )
    clients: list[PresenceClient] = []
    try:
        nodes = await _start_nodes(cluster, say, report)
        n1, n2, n3 = nodes["node1"], nodes["node2"], nodes["node3"]

        say.section("Clients connect (each gets a presence entry on every node)")
        by_id: dict[str, PresenceClient] = {}
        for client_id, label in CLIENTS.items():
            by_id[client_id] = await _connect(cluster, say, client_id, nodes[label], clients)

        say.section("1. Node 3 calls alice, who is connected to node 1")
        where = await n3.command("get_client", clientId="alice")
        t = time.perf_counter()
        ack = await n3.command("invoke_notify", clientId="alice", text="hello from node 3")
        elapsed = time.perf_counter() - t
        note = by_id["alice"].notifications[-1]
        report.invoke = {
            "from": "node3",
            "owner": n1.label,
            "acknowledged": ack["acknowledged"],
            "received": note.text,
            "sentFromNode": note.sent_from_node,
        }
        say.line(
            "node3", f"invoke_d_notify('alice', ...): the registry says node {where['nodeId']}"
        )
        say.line("alice", f"got {note.text!r} (sent_from_node={note.sent_from_node}) from node1")
        say.line(
            "node3",
            f"acknowledged={ack['acknowledged']} in {_ms(elapsed)} (node3 → node1 → alice → back)",
        )

        say.section("2. Node 2 broadcasts an announcement; every node receives it")
        mark = len(cluster.events)
        before = sum(len(c.notifications) for c in clients)
        sent_ms = time.time() * 1000  # node events carry wall-clock ms: time them across processes
        await n2.command("broadcast_announcement", text="deploy at 18:00")
        received: list[NodeEvent] = []
        for _ in nodes:
            received.append(
                await cluster.wait_for(
                    lambda e: e.kind == "announcement" and e not in received,
                    within=10.0,
                    after=mark,
                )
            )
        for event in sorted(received, key=lambda e: e.at_ms):
            say.line(
                event.node,
                f"announcement {event.fields['text']!r} from mesh node {event.fields['sender']}"
                f" (+{event.at_ms - sent_ms:.1f} ms after the call)",
            )
        report.broadcast_receivers = sorted(e.node for e in received)
        await _until(
            lambda: sum(len(c.notifications) for c in clients) >= before + len(clients), 5.0
        )
        report.clients_notified = sum(len(c.notifications) for c in clients) - before
        say.line(
            "clients",
            f"{report.clients_notified} of {len(clients)} clients shown it by their own node",
        )

        say.section("3. Node 3 changes alice's metadata; node 1 owns her stream")
        new_meta = {"displayName": "Alice", "status": "busy", "device": "phone"}
        t = time.perf_counter()
        updated = await n3.command("update_meta", clientId="alice", metadata=new_meta)
        elapsed = time.perf_counter() - t
        stream_meta = await n1.command("stream_meta", clientId="alice")
        registry = await n2.command("get_client", clientId="alice")
        report.metadata = {
            "updated": updated,
            "stream": stream_meta,
            "registry": registry["metadata"],
        }
        say.line(
            "node3", f"update_client_metadata('alice', status=busy) → {updated} in {_ms(elapsed)}"
        )
        say.line("node1", f"alice's stream.meta is now {_fmt_meta(stream_meta)}")
        say.line(
            "node2",
            f"get_client('alice') → node {registry['nodeId']}, {_fmt_meta(registry['metadata'])}",
        )

        say.section("4. bob moves from node 1 to node 3 (supersede)")
        old_bob = by_id["bob"]
        mark = len(cluster.events)
        t = time.perf_counter()
        new_bob = await _connect(cluster, say, "bob", n3, clients, supersede=True, quiet=True)
        elapsed = time.perf_counter() - t
        await _until(lambda: bool(old_bob.disconnect_causes), 5.0)
        await asyncio.sleep(max(0.5, heartbeat))  # room for a (wrong) disconnect event to show up
        n1_streams = (await n1.command("status"))["streams"]
        owner = await n1.command("get_client", clientId="bob")
        disconnected = [
            e
            for e in cluster.events[mark:]
            if e.kind == "disconnected" and e.fields["clientId"] == "bob"
        ]
        report.supersede = {
            "oldClientCauses": list(old_bob.disconnect_causes),
            "oldNodeStillHasStream": "bob" in n1_streams,
            "newOwner": owner["nodeId"] if owner else None,
            "disconnectedEvents": disconnected,
        }
        by_id["bob"] = new_bob
        say.line(
            "node3",
            f"bob connected (supersede=True) in {_ms(elapsed)}; owner now node {owner['nodeId']}",
        )
        say.line(
            "bob",
            f"old connection to node1 closed by the server, cause={old_bob.disconnect_causes}",
        )
        say.line(
            "node1",
            f"streams now {n1_streams}; on_client_disconnected('bob') fired: {bool(disconnected)}",
        )

        say.section("5. node 2 is SIGKILLed; dave reconnects to node 3, carol does not")
        mark = len(cluster.events)
        on_n2 = (await n2.command("status"))["streams"]
        n2.kill()
        killed_at = time.monotonic()
        say.line("node2", f"SIGKILL (it held {on_n2}, it says goodbye to no one)")
        new_dave = await _connect(cluster, say, "dave", n3, clients, supersede=True, quiet=True)
        by_id["dave"] = new_dave
        say.line(
            "node3", f"dave reconnected here {_ms(time.monotonic() - killed_at)} after the kill"
        )
        orphan_task = asyncio.create_task(
            cluster.wait_for(lambda e: e.kind == "orphaned", within=node_ttl * 3 + 15, after=mark)
        )
        # Meanwhile the registry still names node 2 for carol: a call is sent there and
        # times out (short timeout, so it ends well before the leader's cleanup).
        probe = asyncio.create_task(
            n1.command_reply(
                "invoke_notify", clientId="carol", text="are you there?", timeout=node_ttl / 3
            )
        )
        while not orphan_task.done():
            await asyncio.wait({orphan_task}, timeout=0.25 if say.tty else 1.0)
            if not orphan_task.done():
                silent = f"node 2 silent {time.monotonic() - killed_at:4.1f} s"
                say.progress(f"waiting for the leader: {silent}, node_ttl {node_ttl:g} s")
        orphaned = orphan_task.result()
        say.progress(f"node 2 declared dead after {time.monotonic() - killed_at:.1f} s", final=True)
        say.line(
            orphaned.node,
            f"leader: node {orphaned.fields['deadNode']} died; orphaned clients "
            f"{orphaned.fields['clients']} (dave is not: he moved)",
        )
        during = await probe
        after = await n1.command_reply("invoke_notify", clientId="carol", text="still there?")
        report.dead_node_calls = {
            "during": during.get("errorType"),
            "duringMs": during["elapsedMs"],
            "after": after.get("errorType"),
            "afterMs": after["elapsedMs"],
        }
        say.line(
            "node1",
            f"invoke_d_notify('carol') before the cleanup: {during.get('errorType')} "
            f"after {during['elapsedMs']:.0f} ms (timeout={node_ttl / 3:g} s)",
        )
        say.line(
            "node1",
            f"invoke_d_notify('carol') after the cleanup: {after.get('errorType')} "
            f"in {after['elapsedMs']:.1f} ms",
        )
        quiet_for = max(1.0, heartbeat * 3)
        await asyncio.sleep(quiet_for)  # a second report would show up here
        report.orphaned = [e for e in cluster.events[mark:] if e.kind == "orphaned"]
        say.line(
            "", f"orphan reports for node 2 after {quiet_for:g} s more: {len(report.orphaned)}"
        )

        say.section("6. The registry, as node 1 sees it")
        report.final_clients = await n1.command("list_clients")
        report.presence = await n3.command("presence")
        say.table(_registry_rows(report))
        report.events = list(cluster.events)
    except BaseException:
        # Show what the nodes said before they are stopped: the first thing to read.
        for node in cluster.nodes.values():
            say.out.write(node.log_tail())
        raise
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 2.0)
        await cluster.close()
        report.pids = [n.pid for n in cluster.nodes.values() if n.pid is not None]
    report.seconds = time.monotonic() - started
    say.out.write(f"\ndone in {report.seconds:.1f} s; all node processes stopped\n")
    return report


async def _start_nodes(
    cluster: Cluster, say: Transcript, report: DemoReport
) -> dict[str, NodeProcess]:
    say.section("Three nodes join the mesh")
    t = time.perf_counter()
    # node1 first, so it is the mesh leader that later reports node 2's clients.
    # One after the other, so node N gets mesh id N on a fresh prefix, and node1 (the
    # first) holds the cleanup leader lock that later reports node 2's clients.
    started = [
        await cluster.start_node(label, free_port()) for label in ("node1", "node2", "node3")
    ]
    for node in started:
        report.node_ids[node.label] = node.instance_id
        say.line(
            node.label,
            f"mesh id {node.instance_id}, pid {node.pid}, {node.url}",
        )
    say.line("", f"3 nodes up in {time.perf_counter() - t:.2f} s")
    return {n.label: n for n in started}


async def _connect(
    cluster: Cluster,
    say: Transcript,
    client_id: str,
    node: NodeProcess,
    clients: list[PresenceClient],
    *,
    supersede: bool = False,
    quiet: bool = False,
) -> PresenceClient:
    mark = len(cluster.events)
    client = PresenceClient(node.url, client_id, status=Status.AVAILABLE, enable_reconnect=False)
    t = time.perf_counter()
    await client.connect(supersede=supersede)
    clients.append(client)
    event = await cluster.wait_for(
        lambda e: (
            e.kind == "connected" and e.fields["clientId"] == client_id and e.node == node.label
        ),
        within=10.0,
        after=mark,
    )
    if not quiet:
        say.line(
            node.label,
            f"{client_id} connected and registered in {_ms(time.perf_counter() - t)}, "
            f"meta {_fmt_meta(event.fields['metadata'])}",
        )
    return client


async def _until(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110 - state of other tasks
        await asyncio.sleep(0.02)


def _registry_rows(report: DemoReport) -> list[tuple[str, ...]]:
    label_of = {v: k for k, v in report.node_ids.items()}
    rows: list[tuple[str, ...]] = [
        ("client", "node", "status", "connected at", "presence table on node3")
    ]
    for entry in report.final_clients:
        meta = entry["metadata"] or {}
        seen = report.presence.get(entry["clientId"], {})
        connected = time.strftime("%H:%M:%S", time.localtime(entry["connectedAt"] / 1000))
        online = "online" if seen.get("online") else "offline"
        node = label_of.get(entry["nodeId"], str(entry["nodeId"]))
        rows.append((entry["clientId"], node, meta.get("status", ""), connected, online))
    for client_id, seen in report.presence.items():
        if not seen["online"]:
            rows.append((client_id, "-", "-", "-", f"offline ({seen['reason']})"))
    return rows


def _fmt_meta(meta: dict[str, Any] | None) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted((meta or {}).items())) + "}"


async def _main() -> int:
    url = os.environ.get("MESH_REDIS_URL")
    redis: RedisServer | None = None
    if url:
        print(f"meshsrpc demo on MESH_REDIS_URL ({url.split('@')[-1]})")
    else:
        redis = RedisServer().start()
        url = redis.url
        print(
            f"meshsrpc demo on a private {os.path.basename(redis.binary)}, {url} (pid {redis.pid})"
        )
    prefix = f"demo{uuid.uuid4().hex[:8]}"
    try:
        await run_demo(url, prefix=prefix)
    finally:
        if redis is not None:
            redis.close()
        else:
            await _delete_keys(url, prefix)
    return 0


async def _delete_keys(url: str, prefix: str) -> None:
    # On someone else's Redis, leave nothing behind (the nodes removed their own
    # entries on stop; the id counter and registry keys remain).
    client = create_redis_client(RedisSettings(url=url))
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def main() -> None:
    """``python -m examples.demo``."""
    sys.exit(asyncio.run(_main()))


if __name__ == "__main__":
    main()
