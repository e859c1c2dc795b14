"""``make demo``: presence nodes, clients, one Redis, nodes that die and one that drains.

Starts a private Redis (or uses ``MESH_REDIS_URL``), three node processes on loopback
ports and five clients, then walks through: calling a client on node 1 from node 3, a
broadcast to every node, metadata changed from another node, a client moving to another
node, node 2 killed and its clients reported once by the leader, the final registry,
then a rolling restart (node 4 joins, node 3 drains: its clients move, none is reported
gone) and a SIGKILL of the leader (reconnecting clients are back on node 4 within the
probe timeout; the new leader reports the others within about 2 x node_ttl).
Every step prints what happened, on which node, and how long it took; ``run_demo``
also returns those facts as a :class:`DemoReport` (the tests check it). Should Redis
go away meanwhile (a Ctrl-C reaches a private Redis too), the demo says so and stops
at once instead of waiting for steps that cannot succeed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import meshsrpc.loops
from meshsrpc import RedisSettings
from meshsrpc.engine import MeshKeys
from meshsrpc.redis_server import RedisServer, free_port
from meshsrpc.settings import create_redis_client, redact_url

from .presence.client import PresenceClient
from .presence.cluster import Cluster, NodeEvent, NodeProcess
from .transcript import INDENT, Transcript, fmt_meta, ms

__all__ = ["CLIENTS", "DemoReport", "RedisGoneError", "main", "run_demo"]

CLIENTS = {"alice": "node1", "bob": "node1", "carol": "node2", "dave": "node2", "erin": "node3"}
"""Who connects where at the start."""

FLEET = 20
"""SDK clients that reconnect on their own (steps 8 and 9), as apps behind a load balancer."""


class RedisGoneError(RuntimeError):
    """The demo's Redis died or stopped answering while the demo ran; says how."""


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
    declared_dead: dict[str, float] = field(default_factory=dict)
    final_clients: list[dict[str, Any]] = field(default_factory=list)
    operator: dict[str, str] = field(default_factory=dict)
    drain: dict[str, Any] = field(default_factory=dict)
    leader_crash: dict[str, Any] = field(default_factory=dict)
    presence: dict[str, Any] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)
    seconds: float = 0.0


async def run_demo(
    redis_url: str,
    *,
    out: TextIO = sys.stdout,
    heartbeat: float = 1.0,
    node_ttl: float = 3.0,
    prefix: str | None = None,
    redis_server: RedisServer | None = None,
) -> DemoReport:
    """Run the whole scenario against ``redis_url`` and return what happened.

    ``redis_server`` is the private server behind ``redis_url``, if the demo started
    one: its process is watched. Either way, :class:`RedisGoneError` ends the demo as
    soon as Redis is gone. Every node process and client is stopped before this
    returns, also on failure.
    """
    scenario = Scenario(redis_url, out, heartbeat, node_ttl, prefix)
    started = time.monotonic()
    try:
        await _run_watched(scenario, _RedisWatch(redis_url, redis_server))
    except RedisGoneError:
        raise  # the nodes' logs would only repeat that Redis is gone
    except BaseException:
        # What the nodes logged is the first thing to read when a step fails.
        for node in scenario.cluster.nodes.values():
            scenario.say.write(node.log_tail())
        raise
    finally:
        await scenario.close()
    scenario.report.seconds = time.monotonic() - started
    scenario.say.write(f"\ndone in {scenario.report.seconds:.1f} s; all node processes stopped\n")
    return scenario.report


class _RedisWatch:
    """Tells when the demo's Redis is gone: its process ended, or it stopped answering."""

    _POLL = 0.2
    _PING_EVERY = 1.0
    _PINGS_MISSED = 3

    def __init__(self, url: str, server: RedisServer | None) -> None:
        self.url = url
        self.server = server
        self.pid = server.pid if server is not None else None

    async def gone(self) -> str:
        """Return (only) once Redis is gone: why, in one sentence."""
        if self.server is not None:
            while self.server.running:  # noqa: ASYNC110 - another process's state
                await asyncio.sleep(self._POLL)
            return self._how_it_ended(self.server.returncode)
        client = create_redis_client(
            RedisSettings(url=self.url), socket_timeout=1.0, socket_connect_timeout=1.0
        )
        missed = 0
        try:
            while missed < self._PINGS_MISSED:
                await asyncio.sleep(self._PING_EVERY)
                try:
                    await client.ping()
                    missed = 0
                except Exception:
                    missed += 1
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()
        return f"Redis at {redact_url(self.url)} stopped answering"

    def _how_it_ended(self, code: int | None) -> str:
        if code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        elif code:
            how = f"exited with status {code}"
        else:
            how = "was shut down"
        return (
            f"the demo's private Redis (pid {self.pid}) {how}; a Ctrl-C in this terminal "
            "reaches it too. The nodes cannot work without it: the demo stops here"
        )


async def _run_watched(scenario: Scenario, watch: _RedisWatch) -> None:
    """Run the steps; if Redis goes away first (or a step fails because it did), say so."""
    steps = asyncio.create_task(scenario.run(), name="demo-steps")
    watcher = asyncio.create_task(watch.gone(), name="demo-redis-watch")
    try:
        await asyncio.wait({steps, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if steps.done() and steps.exception() is not None and not watcher.done():
            # A step may notice first; give the watch a moment to tell why.
            await asyncio.wait({watcher}, timeout=2 * _RedisWatch._PING_EVERY)
    finally:
        for task in (steps, watcher):
            task.cancel()
        await asyncio.gather(steps, watcher, return_exceptions=True)
    if watcher.done() and not watcher.cancelled() and watcher.exception() is None:
        cause = None if steps.cancelled() else steps.exception()
        raise RedisGoneError(watcher.result()) from cause
    steps.result()


class Scenario:
    """The demo's steps, one method each, sharing the cluster, the clients and the report."""

    def __init__(
        self, redis_url: str, out: TextIO, heartbeat: float, node_ttl: float, prefix: str | None
    ) -> None:
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        self.say = Transcript(out)
        self.report = DemoReport()
        # The nodes (child processes) and the clients here share one secret: every
        # connection is signed, as in production (a server with no auth refuses all).
        self.secret = os.environ.get("SRPC_AUTH_SECRET") or secrets.token_hex(16)
        self.cluster = Cluster(
            redis_url,
            prefix or f"demo{uuid.uuid4().hex[:8]}",
            auth_secret=self.secret,
            heartbeat=heartbeat,
            node_ttl=node_ttl,
            request_timeout=max(2.0, node_ttl),
        )
        self.nodes: dict[str, NodeProcess] = {}
        self.clients: dict[str, PresenceClient] = {}  # the current connection of each user
        # Per fleet client, when each of its connections was up (steps 8 and 9).
        self.fleet_connected: dict[str, list[float]] = {}
        self._all_clients: list[PresenceClient] = []  # every connection ever opened

    async def run(self) -> None:
        """Every step, in order."""
        await self.start_nodes()
        await self.connect_clients()
        await self.invoke_across_nodes()
        await self.broadcast()
        await self.update_metadata_from_another_node()
        await self.move_client()
        await self.kill_node()
        await self.show_registry()
        await self.show_operator_view()
        await self.rolling_restart()
        await self.kill_leader()
        self.report.events = list(self.cluster.events)

    async def close(self) -> None:
        """Disconnect every client and stop every node (killing the stubborn ones)."""
        for client in self._all_clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 2.0)
        await self.cluster.close()
        self.report.pids = [n.pid for n in self.cluster.nodes.values() if n.pid is not None]

    # --- steps ---------------------------------------------------------------------

    async def start_nodes(self) -> None:
        self.say.section("Three nodes join the mesh")
        t = time.perf_counter()
        # One after the other, so node N gets mesh id N on a fresh prefix, and node1
        # (the first) holds the cleanup leader lock that later reports node 2's clients.
        for label in ("node1", "node2", "node3"):
            node = await self.cluster.start_node(label, free_port())
            self.nodes[label] = node
            self.report.node_ids[label] = node.instance_id
            self.say.line(label, f"mesh id {node.instance_id}, pid {node.pid}, {node.url}")
        self.say.line("", f"3 nodes up in {time.perf_counter() - t:.2f} s")

    async def connect_clients(self) -> None:
        self.say.section("Clients connect (each gets a presence entry on every node)")
        for client_id, label in CLIENTS.items():
            await self._connect(client_id, self.nodes[label])

    async def invoke_across_nodes(self) -> None:
        self.say.section("1. Node 3 calls alice, who is connected to node 1")
        n3 = self.nodes["node3"]
        where = await n3.command("get_client", clientId="alice")
        t = time.perf_counter()
        ack = await n3.command("invoke_notify", clientId="alice", text="hello from node 3")
        elapsed = time.perf_counter() - t
        note = self.clients["alice"].notifications[-1]
        self.report.invoke = {
            "from": "node3",
            "acknowledged": ack["acknowledged"],
            "received": note.text,
            "sentFromNode": note.sent_from_node,
        }
        self.say.line(
            "node3", f"invoke_d_notify('alice'): the registry says node {where['nodeId']}"
        )
        self.say.line(
            "alice", f"got {note.text!r} (sent_from_node={note.sent_from_node}) via node1"
        )
        self.say.line(
            "node3",
            f"acknowledged={ack['acknowledged']} in {ms(elapsed)} (node3 → node1 → alice → back)",
        )

    async def broadcast(self) -> None:
        self.say.section("2. Node 2 broadcasts an announcement; every node receives it")
        mark = len(self.cluster.events)
        before = self._notifications()
        sent_ms = time.time() * 1000  # node events carry wall-clock ms: time across processes
        await self.nodes["node2"].command("broadcast_announcement", text="deploy at 18:00")
        received: list[NodeEvent] = []
        for _ in self.nodes:
            received.append(
                await self.cluster.wait_for(
                    lambda e: e.kind == "announcement" and e not in received,
                    within=10.0,
                    after=mark,
                )
            )
        for event in sorted(received, key=lambda e: e.at_ms):
            self.say.line(
                event.node,
                f"announcement {event.fields['text']!r} from mesh node {event.fields['sender']}"
                f" (+{event.at_ms - sent_ms:.1f} ms after the call)",
            )
        self.report.broadcast_receivers = sorted(e.node for e in received)
        # Each node shows it to its own clients with a dNotify call.
        await _until(lambda: self._notifications() >= before + len(self.clients), 5.0)
        self.report.clients_notified = self._notifications() - before
        self.say.line(
            "clients",
            f"{self.report.clients_notified} of {len(self.clients)} clients shown it by their node",
        )

    async def update_metadata_from_another_node(self) -> None:
        self.say.section("3. Node 3 changes alice's metadata; node 1 owns her stream")
        new_meta = {"displayName": "Alice", "status": "busy", "device": "phone"}
        t = time.perf_counter()
        updated = await self.nodes["node3"].command(
            "update_meta", clientId="alice", metadata=new_meta
        )
        elapsed = time.perf_counter() - t
        stream_meta = await self.nodes["node1"].command("stream_meta", clientId="alice")
        registry = await self.nodes["node2"].command("get_client", clientId="alice")
        self.report.metadata = {
            "updated": updated,
            "stream": stream_meta,
            "registry": registry["metadata"],
        }
        self.say.line("node3", f"update_client_metadata('alice', …) → {updated} in {ms(elapsed)}")
        self.say.line("node1", f"alice's stream.meta is now {fmt_meta(stream_meta)}")
        self.say.line(
            "node2",
            f"get_client('alice') → node {registry['nodeId']}, {fmt_meta(registry['metadata'])}",
        )

    async def move_client(self) -> None:
        self.say.section("4. bob moves from node 1 to node 3 (supersede)")
        n1 = self.nodes["node1"]
        old_bob = self.clients["bob"]
        mark = len(self.cluster.events)
        t = time.perf_counter()
        await self._connect("bob", self.nodes["node3"], supersede=True, quiet=True)
        elapsed = time.perf_counter() - t
        await _until(lambda: bool(old_bob.disconnect_causes), 5.0)
        # Room for a (wrong) disconnect event to show up before we say there was none.
        await asyncio.sleep(max(0.5, self.heartbeat))
        n1_streams = (await n1.command("status"))["streams"]
        owner = await n1.command("get_client", clientId="bob")
        disconnected = [
            e
            for e in self.cluster.events[mark:]
            if e.kind == "disconnected" and e.fields["clientId"] == "bob"
        ]
        self.report.supersede = {
            "oldClientCauses": list(old_bob.disconnect_causes),
            "oldNodeStillHasStream": "bob" in n1_streams,
            "newOwner": owner["nodeId"] if owner else None,
            "disconnectedEvents": disconnected,
        }
        self.say.line(
            "node3",
            f"bob connected (supersede=True) in {ms(elapsed)}; owner now node {owner['nodeId']}",
        )
        self.say.line(
            "bob", f"old connection to node1 closed by the server: {old_bob.disconnect_causes}"
        )
        self.say.line(
            "node1",
            f"streams now {n1_streams}; on_client_disconnected('bob') fired: {bool(disconnected)}",
        )

    async def kill_node(self) -> None:
        self.say.section("5. node 2 is SIGKILLed; dave reconnects to node 3, carol does not")
        n1, n2 = self.nodes["node1"], self.nodes["node2"]
        mark = len(self.cluster.events)
        held = (await n2.command("status"))["streams"]
        n2.kill()
        killed_at = time.monotonic()
        # node_ttl counts from a node's last heartbeat, not from its death: up to one
        # heartbeat interval more. Read it by Redis's clock, as the leader does.
        beat_age = await _heartbeat_age(
            self.cluster.redis_url, self.cluster.prefix, self.report.node_ids["node2"]
        )
        last_beat = killed_at - beat_age
        self.say.line(
            "node2",
            f"SIGKILL (it held {held}; it says goodbye to no one); "
            f"its last heartbeat was {ms(beat_age)} before",
        )
        # Until the leader's cleanup the registry still names node 2 for carol: a call
        # made now is sent there and times out.
        probe = asyncio.create_task(
            n1.command_reply(
                "invoke_notify", clientId="carol", text="are you there?", timeout=self.node_ttl / 3
            )
        )
        await self._connect("dave", self.nodes["node3"], supersede=True, quiet=True)
        self.say.line("node3", f"dave reconnected here {ms(time.monotonic() - killed_at)} later")

        orphaned = asyncio.create_task(
            self.cluster.wait_for(
                lambda e: e.kind == "orphaned", within=self.node_ttl * 3 + 15, after=mark
            )
        )
        while not orphaned.done():
            await asyncio.wait({orphaned}, timeout=0.25 if self.say.tty else 1.0)
            if not orphaned.done():
                silent = time.monotonic() - last_beat
                self.say.progress(
                    f"waiting for the leader: node 2's last heartbeat was {silent:4.1f} s ago;"
                    f" it is dead once that exceeds node_ttl {self.node_ttl:g} s"
                )
        report = orphaned.result()
        now = time.monotonic()
        self.report.declared_dead = {
            "sinceKill": now - killed_at,
            "sinceLastHeartbeat": now - last_beat,
        }
        self.say.progress(
            f"node 2 declared dead {now - last_beat:.1f} s after its last heartbeat "
            f"({now - killed_at:.1f} s after the SIGKILL; node_ttl {self.node_ttl:g} s counts "
            f"from the last heartbeat, and the leader checks every {self.heartbeat:g} s)",
            final=True,
        )
        self.say.line(
            report.node,
            f"leader: node {report.fields['deadNode']} died; orphaned clients "
            f"{report.fields['clients']} (dave is not: he moved)",
        )

        during = await probe
        after = await n1.command_reply("invoke_notify", clientId="carol", text="still there?")
        self.report.dead_node_calls = {
            "during": during.get("errorType"),
            "duringMs": during["elapsedMs"],
            "after": after.get("errorType"),
            "afterMs": after["elapsedMs"],
        }
        self.say.line(
            "node1",
            f"invoke_d_notify('carol') before the cleanup: {during.get('errorType')} "
            f"after {during['elapsedMs']:.0f} ms (timeout={self.node_ttl / 3:g} s)",
        )
        self.say.line(
            "node1",
            f"invoke_d_notify('carol') after the cleanup: {after.get('errorType')} "
            f"in {after['elapsedMs']:.1f} ms",
        )

        quiet_for = max(1.0, self.heartbeat * 3)
        await asyncio.sleep(quiet_for)  # a second report would show up here
        self.report.orphaned = [e for e in self.cluster.events[mark:] if e.kind == "orphaned"]
        self.say.line(
            "", f"orphan reports for node 2 after {quiet_for:g} s more: {len(self.report.orphaned)}"
        )

    async def show_registry(self) -> None:
        self.say.section("6. The registry, as node 1 sees it")
        self.report.final_clients = await self.nodes["node1"].command("list_clients")
        self.report.presence = await self.nodes["node3"].command("presence")
        self.say.table(_registry_rows(self.report))

    async def show_operator_view(self) -> None:
        self.say.section("7. What an operator sees: the meshsrpc command")
        for command in (("nodes", "presence"), ("clients", "presence")):
            argv = [
                sys.executable, "-m", "meshsrpc", "--redis-url", self.cluster.redis_url,
                "--prefix", self.cluster.prefix, *command,
            ]  # fmt: skip
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            async with asyncio.timeout(30):
                output, _ = await process.communicate()
            text = output.decode()
            self.report.operator[command[0]] = text
            self.say.write(f"{INDENT}$ meshsrpc {' '.join(command)}\n")
            self.say.write("".join(f"{INDENT}{line}\n" for line in text.splitlines()))

    async def rolling_restart(self) -> None:
        self.say.section(
            f"8. A rolling restart: node 4 joins, node 3 drains and leaves; {FLEET} SDK clients"
            " and node 3's users move without a leave"
        )
        n1, n3 = self.nodes["node1"], self.nodes["node3"]
        # The replacement first (a deploy with a surge node), so nobody is short of a node.
        n4 = await self.cluster.start_node("node4", free_port())
        self.nodes["node4"] = n4
        self.report.node_ids["node4"] = n4.instance_id
        self.say.line("node4", f"mesh id {n4.instance_id}, pid {n4.pid}, {n4.url}")
        # SDK clients as behind a load balancer: node 3 first, then the others.
        await asyncio.gather(
            *(self._connect_fleet(f"fleet{i:02d}", [n3.url, n1.url, n4.url]) for i in range(FLEET))
        )
        users = [cid for cid, c in self.clients.items() if c.url == n3.url]
        self.say.line("node3", f"holds {FLEET} fleet clients and {users}")
        mark = len(self.cluster.events)
        started = time.monotonic()
        drain = asyncio.create_task(n3.command("drain", grace=self.node_ttl, within=60.0))
        # Demo users do not reconnect on their own: do what the SDK client does for them
        # on the "restart" close (1012): connect to another node at once, no supersede.
        # Node 3 answers the ownership probe "not held", and node 1 takes them over.
        await _until(
            lambda: all(self.clients[cid].disconnect_causes for cid in users), self.node_ttl
        )
        causes = {cid: self.clients[cid].disconnect_causes[-1:] for cid in users}
        await asyncio.gather(*(self._connect(cid, n1, quiet=True) for cid in users))
        users_back = time.monotonic() - started
        await _until(lambda: self._fleet_back(started) == FLEET, self.node_ttl * 2)
        fleet_back = [max(t) - started for t in self.fleet_connected.values() if max(t) > started]
        await drain
        drained = time.monotonic() - started
        await _until(lambda: not n3.alive, 10.0)
        # Room for a (wrong) disconnect or orphan report to show up before we say none came.
        await asyncio.sleep(max(1.0, self.heartbeat * 2))
        leaves = [e for e in self.cluster.events[mark:] if e.kind in ("disconnected", "orphaned")]
        owners = {c["clientId"]: c["nodeId"] for c in await n1.command("list_clients")}
        self.report.drain = {
            "userCauses": causes,
            "moved": sorted(cid for cid, node in owners.items() if node == n1.instance_id),
            "fleetBack": len(fleet_back),
            "fleetBackMaxS": max(fleet_back, default=None),
            "usersBackS": users_back,
            "drainS": drained,
            "falseLeaves": leaves,
        }
        self.say.line(
            "fleet",
            f"{len(fleet_back)} of {FLEET} reconnected to node 1 on the 'restart' close, the "
            f"last {max(fleet_back, default=0) * 1000:.0f} ms after the drain began",
        )
        self.say.line("node1", f"took over {users} in {ms(users_back)} (probe: not held)")
        self.say.line(
            "node3",
            f"drain() returned after {ms(drained)}, then it left the mesh; "
            f"on_client_disconnected / orphan reports since the drain: {len(leaves)}",
        )

    async def kill_leader(self) -> None:
        self.say.section("9. The leader, node 1, is SIGKILLed with every client of the mesh")
        n1, n4 = self.nodes["node1"], self.nodes["node4"]
        held = (await n1.command("status"))["streams"]
        mark = len(self.cluster.events)
        n1.kill()
        killed_at = time.monotonic()
        self.say.line("node1", f"SIGKILL (it held {len(held)} clients and the leader lock)")
        await _until(lambda: self._fleet_back(killed_at) == FLEET, self.node_ttl * 3 + 10)
        fleet_back = sorted(
            max(t) - killed_at for t in self.fleet_connected.values() if max(t) > killed_at
        )
        self.say.line(
            "fleet",
            f"{len(fleet_back)} of {FLEET} reconnected to node 4, the last "
            f"{max(fleet_back, default=0) * 1000:.0f} ms after the SIGKILL (median "
            f"{fleet_back[len(fleet_back) // 2] * 1000 if fleet_back else 0:.0f} ms): node 1 "
            "did not answer the ownership probe, so node 4 took them over at once",
        )
        report = await self.cluster.wait_for(
            lambda e: e.kind == "orphaned", within=self.node_ttl * 3 + 15, after=mark
        )
        reported_after = time.monotonic() - killed_at
        self.say.line(
            report.node,
            f"new leader: node {report.fields['deadNode']} died; orphaned clients "
            f"{report.fields['clients']} {reported_after:.1f} s after the SIGKILL "
            f"(2 x node_ttl = {2 * self.node_ttl:g} s; the fleet moved, so it is not in it)",
        )
        quiet_for = max(1.0, self.heartbeat * 3)
        await asyncio.sleep(quiet_for)  # a second report would show up here
        owners = {c["clientId"]: c["nodeId"] for c in await n4.command("list_clients")}
        self.report.leader_crash = {
            "fleetBack": len(fleet_back),
            "fleetBackMaxS": max(fleet_back, default=None),
            "fleetBackP50S": fleet_back[len(fleet_back) // 2] if fleet_back else None,
            "orphanReportS": reported_after,
            "reports": [e for e in self.cluster.events[mark:] if e.kind == "orphaned"],
            "owners": owners,
        }
        self.say.line(
            "",
            f"orphan reports for node 1 after {quiet_for:g} s more: "
            f"{len(self.report.leader_crash['reports'])}",
        )

    # --- helpers -------------------------------------------------------------------

    async def _connect_fleet(self, client_id: str, urls: list[str]) -> None:
        """An SDK client that reconnects by itself, to its next URL when a node goes."""
        client = PresenceClient(
            urls[0],
            client_id,
            client_secret=self.secret,
            enable_reconnect=True,
            fallback_urls=urls[1:],
        )
        times = self.fleet_connected.setdefault(client_id, [])
        client.register_connection_handler(lambda: times.append(time.monotonic()))
        self._all_clients.append(client)
        await client.connect()

    def _fleet_back(self, since: float) -> int:
        """How many fleet clients connected again after ``since``."""
        return sum(1 for t in self.fleet_connected.values() if t and max(t) > since)

    async def _connect(
        self, client_id: str, node: NodeProcess, *, supersede: bool = False, quiet: bool = False
    ) -> None:
        """Connect ``client_id`` to ``node`` and wait until that node reports it registered."""
        mark = len(self.cluster.events)
        # No reconnect: in this demo a user moves only when the script says so.
        client = PresenceClient(
            node.url, client_id, enable_reconnect=False, client_secret=self.secret
        )
        t = time.perf_counter()
        await client.connect(supersede=supersede)
        self.clients[client_id] = client
        self._all_clients.append(client)
        event = await self.cluster.wait_for(
            lambda e: (
                e.kind == "connected" and e.fields["clientId"] == client_id and e.node == node.label
            ),
            within=10.0,
            after=mark,
        )
        if not quiet:
            self.say.line(
                node.label,
                f"{client_id} connected and registered in {ms(time.perf_counter() - t)}, "
                f"meta {fmt_meta(event.fields['metadata'])}",
            )

    def _notifications(self) -> int:
        return sum(len(c.notifications) for c in self._all_clients)


async def _heartbeat_age(url: str, prefix: str, instance_id: int) -> float:
    """Seconds since the node's last heartbeat, by the Redis clock (0.0 if unknown)."""
    keys = MeshKeys(prefix, "_mc:presence")  # the nodes' mesh (node.py's --mesh-key)
    client = create_redis_client(RedisSettings(url=url))
    try:
        score = await client.zscore(keys.heartbeats, str(instance_id))
        seconds, micros = await client.time()
    finally:
        await client.aclose()
    if score is None:
        return 0.0
    return max(0.0, (seconds * 1000 + micros // 1000 - score) / 1000)


async def _until(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110 - other tasks' state
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


async def _main() -> int:
    url = os.environ.get("MESH_REDIS_URL")
    redis: RedisServer | None = None
    if url:
        print(f"meshsrpc demo on MESH_REDIS_URL ({redact_url(url)})")
    else:
        redis = RedisServer().start()
        url = redis.url
        binary = os.path.basename(redis.binary)
        print(f"meshsrpc demo on a private {binary}, {url} (pid {redis.pid})")
    prefix = f"demo{uuid.uuid4().hex[:8]}"
    try:
        await run_demo(url, prefix=prefix, redis_server=redis)
    except RedisGoneError as exc:
        print(f"\ndemo stopped: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # run_demo already printed the nodes' logs; one line says what failed.
        print(f"\ndemo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if redis is not None:
            redis.close()
        else:
            with contextlib.suppress(Exception):  # best effort: Redis may be the problem
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
    sys.exit(meshsrpc.loops.run(_main()))


if __name__ == "__main__":
    main()
