"""Issue 8: the registry tells the truth while clients churn and things really break.

Three MeshSrpcServer nodes run as child processes on one private Redis. Hundreds of
SRPC clients connect, disconnect, move between nodes (v1, v2 with ``_supersede``) and
try to take each other over (v2 without supersede) for a bounded time. Meanwhile one
node is SIGKILLed and started again, Redis is restarted (it comes back empty), Redis is
paused for longer than a heartbeat, a node drains (``drain()``: its clients are closed
with 1012 "restart"; most reconnect elsewhere at once) and restarts, and the cleanup
leader is SIGKILLed and started again.

Every connection carries its own session token (``m--s``) in its metadata, so each
callback the nodes report names exactly one connection. At the end, after the TTLs
settle:

- ``list_clients()`` equals the live connections, with the node that holds each;
- every connection that ended while its client left (a disconnect, or its node died)
  was reported exactly once, as ``disconnected`` by its node or ``orphaned`` by the
  leader; a connection that was superseded, refused or is still live was not (the
  exceptions: a leave or a takeover that ended as its node was SIGKILLed, see
  CRASH_WINDOW: either outcome is right then);
- a drained connection whose client reappeared on another node within the grace was
  not reported at all; one whose client did not was reported disconnected once;
- a connection of a SIGKILLed node whose client came back without supersede was either
  taken over (the dead node did not answer the probe: no report) or reported orphaned
  once by the leader (it cleaned the dead node up first), never disconnected;
- no connection was reported twice, nor by a node that did not hold it;
- a v2 takeover without ``_supersede`` of a live connection never succeeded outside the
  Redis outage and the Redis pause (the owner cannot answer the probe then);
- a call to every live client succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from meshsrpc import (
    LeaderOptions,
    MeshClientRedisRegistry,
    RedisSettings,
    SrpcClient,
    SrpcConflictError,
    SrpcError,
)
from meshsrpc.client_service import MeshClientService
from meshsrpc.redis_server import RedisServer

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DNotifyRequest,
    DNotifyResponse,
    ServerMessage,
)
from tests.reliability.harness import SOAK, Client, EventLog, NodeProcess

# The run is bounded by DURATION; the rest is start-up, settling and the final calls.
pytestmark = pytest.mark.timeout(600 if SOAK else 300)
CLIENTS = 2000 if SOAK else 500
DURATION = 120.0 if SOAK else 30.0
# The node TTL must exceed the longest event-loop stall of a loaded node, or live
# nodes are declared dead (and their clients reported orphaned while connected).
HEARTBEAT = 0.5 if SOAK else 0.2
NODE_TTL = 6.0 if SOAK else 3.0
# Likewise the probe timeout: a node that does not answer a probe in time loses its live
# client to a plain v2 connection elsewhere (a takeover this test counts as a failure).
PROBE_TIMEOUT = NODE_TTL / 3
LEAVE_TIMEOUT = 20.0  # an orphan report needs the leader lock TTL plus the node TTL
# Known limit: a node removes a leaving client from the registry, then runs the
# disconnect callback. SIGKILLed between the two, nobody reports that client (the
# leader finds no entry to call orphaned). A leave begun this long before the kill of
# its node may therefore go unreported (at most one report, never two).
CRASH_WINDOW = 1.0
# Drained clients that reconnect (the others leave): the SDK client does so at once.
DRAIN_RECONNECTS = 0.8
CONNECTS_AT_ONCE = 24


@dataclass
class Session:
    """One connection of one client, as the test drove it."""

    token: str
    cid: str
    node: NodeProcess
    node_id: int
    client: Client
    dropped: asyncio.Event
    # How it ended: None (live), "left" (we disconnected, or it dropped: one leave
    # expected), "superseded" (a newer connection took over: no leave), "unclear"
    # (kicked by a move that then failed: at most one leave).
    ended: str | None = None
    cause: str | None = None  # the close cause the client saw
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float = 0.0
    superseded_by: Session | None = None  # the connection that took over from this one


@dataclass
class Churn:
    """State and counters of one run."""

    redis: RedisServer
    nodes: list[NodeProcess]
    log: EventLog
    deadline: float
    sessions: list[Session] = field(default_factory=list)
    refused_tokens: list[str] = field(default_factory=list)
    outage: list[tuple[float, float]] = field(default_factory=list)
    # While Redis is paused a live owner cannot answer a probe: it looks dead.
    probe_blind: list[tuple[float, float]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    timeline: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    kills: list[tuple[NodeProcess, float]] = field(default_factory=list)  # (node, when)
    # Set shortly before Redis restarts: no moves then (see inject_faults).
    no_moves: bool = False
    moves_in_flight: int = 0
    connect_gate: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(CONNECTS_AT_ONCE)
    )

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def live_nodes(self) -> list[NodeProcess]:
        return [node for node in self.nodes if node.alive and node.port and not node.draining]

    def was_killed(self, node: NodeProcess) -> bool:
        return any(victim is node for victim, _ in self.kills)

    def marks(self, at: float) -> dict[str, float]:
        return {name: round(at - mark, 2) for name, mark in self.timeline.items()}

    def when(self, session: Session) -> str:
        return f"ended={session.ended} after={self.marks(session.ended_at)}"

    def ended_as_its_node_died(self, session: Session) -> bool:
        """The session ended within CRASH_WINDOW before its node was killed."""
        return any(
            session.node is victim and kill - CRASH_WINDOW <= session.ended_at <= kill
            for victim, kill in self.kills
        )

    def in_outage(self, at: float) -> bool:
        return any(start <= at <= end for start, end in self.outage)


async def open_session(
    churn: Churn,
    cid: str,
    serial: int,
    node: NodeProcess,
    version: int,
    supersede: bool,
    *,
    gated: bool = True,
) -> Session | None:
    token = f"{cid}.{serial}"
    client: Client = SrpcClient(
        node.url,
        ClientMessage,
        ServerMessage,
        cid,
        client_meta={"s": token},
        enable_reconnect=False,
        protocol_version=version,
        connect_timeout=5.0,
    )
    client.register_message_handler("dNotify", lambda _r: DNotifyResponse(acknowledged=True))
    dropped = asyncio.Event()
    causes: list[str] = []

    def on_disconnect(cause: str) -> None:
        causes.append(cause)
        dropped.set()

    client.register_disconnect_handler(on_disconnect)
    node_id = node.node_id
    # A drained client reconnects at once, as the SDK client does: not after the queue.
    async with churn.connect_gate if gated else contextlib.nullcontext():
        try:
            await client.connect(supersede=supersede)
        except SrpcConflictError:
            churn.count("refused_conflict")
            churn.refused_tokens.append(token)
            return None
        except SrpcError:
            churn.count("connect_failed")
            churn.refused_tokens.append(token)
            await client.disconnect()
            return None
    session = Session(token, cid, node, node_id, client, dropped)
    client.register_disconnect_handler(lambda cause: setattr(session, "cause", cause))
    churn.sessions.append(session)
    churn.count("connections")
    # Activation follows the first ping: wait for the node to report the client.
    await churn.log.wait_for(
        lambda: bool(churn.log.of(token, "connected")) or dropped.is_set(), 10.0
    )
    return session


async def end_and_expect_leave(churn: Churn, session: Session) -> None:
    """The client left with ``session``: wait for its one leave report (if it was announced)."""
    session.ended = "left"
    session.ended_at = time.monotonic()
    await session.client.disconnect()
    if session.cause == "supersede":
        # The server closed it as taken over just before our own close: see dropped().
        session.ended = "unclear"
        return
    log = churn.log
    # A connection that never got announced is never reported as gone either.
    await log.wait_for(lambda: bool(log.of(session.token, "connected")), 1.0)
    if log.of(session.token, "connected"):
        await log.wait_for(
            lambda: bool(log.of(session.token, "disconnected", "orphaned")), LEAVE_TIMEOUT
        )


def superseded(old: Session, new: Session) -> None:
    """A newer connection of the client took over from ``old`` (no leave expected)."""
    old.ended_at = time.monotonic()
    old.superseded_by = new
    if old.dropped.is_set() and old.cause != "supersede":
        # It had dropped on its own before (its node died): whether the newer
        # connection registered before the leader reported it orphaned is a race.
        old.ended = "unclear"
    else:
        old.ended = "superseded"


async def move_or_probe(
    churn: Churn,
    current: Session,
    cid: str,
    serial: int,
    nodes: list[NodeProcess],
    rng: random.Random,
    roll: float,
) -> Session | None:
    """Connect ``cid`` again while ``current`` is live; returns the live session after."""
    if roll < 0.9:
        # Move: connect again (v1 always takes over, v2 with _supersede=1).
        version = rng.choice((1, 2))
        old = current
        target = rng.choice(nodes)
        new = await open_session(churn, cid, serial, target, version, True)
        if new is None:
            if target is old.node:
                # Its handshake may have got through and closed the old connection
                # here before it failed: then the close is on its way.
                try:
                    async with asyncio.timeout(3.0):
                        await old.dropped.wait()
                except TimeoutError:
                    pass
            if old.dropped.is_set():
                # Closed by the failed connection's handshake here, or it dropped
                # meanwhile (its node died): at most one leave.
                old.ended = "unclear"
                old.ended_at = time.monotonic()
                await old.client.disconnect()
                current = None
            return current
        new_dropped = new.dropped.is_set()
        if new_dropped:
            await dropped(churn, new)
            if not churn.log.of(new.token, "connected"):
                # It closed before activation: a move to another node never happened
                # (the takeover is written at activation). One here had closed the old
                # connection already: then the client left (at most one leave).
                churn.count("move_failed")
                if not old.dropped.is_set():
                    return old
                old.ended = "unclear"
                old.ended_at = time.monotonic()
                await old.client.disconnect()
                return None
        superseded(old, new)
        churn.count("moves")
        try:
            async with asyncio.timeout(3.0):
                await old.dropped.wait()
        except TimeoutError:
            churn.count("kick_not_seen")
        await old.client.disconnect()
        current = None if new_dropped else new
    else:
        # A stranger with the same client id, v2 without supersede: must be refused.
        attempt_at = time.monotonic()
        probe = await open_session(churn, cid, serial, rng.choice(nodes), 2, False)
        if probe is None:
            return current
        if current.dropped.is_set():
            current.ended_at = time.monotonic()
            current.superseded_by = probe
            if churn.was_killed(current.node) and current.cause != "restart":
                # Its node died meanwhile, and the plain v2 connection got in: either the
                # dead node did not answer the probe and the client was taken over
                # (nothing reported), or the leader had cleaned the dead node up first
                # (the old connection is reported orphaned, once). check() tells which.
                churn.count("reconnect_after_death")
                current.ended = "died_then_back"
            else:
                # Drained (or kicked) meanwhile: at most one leave.
                current.ended = "unclear"
            current = probe
            return current
        now = time.monotonic()
        in_outage = churn.in_outage(attempt_at) or churn.in_outage(now)
        blind = any(
            start <= t <= end for start, end in churn.probe_blind for t in (attempt_at, now)
        )
        churn.count(
            "takeover_in_outage" if in_outage else "takeover_in_pause" if blind else "takeover"
        )
        churn.notes.append(
            f"takeover {probe.token} on {probe.node_id} from {current.token} on "
            f"{current.node_id} at {churn.marks(attempt_at)}: "
            f"{churn.log.by_token.get(current.token)} dropped={current.dropped.is_set()}"
        )
        old = current
        superseded(old, probe)
        try:
            async with asyncio.timeout(3.0):
                await old.dropped.wait()
        except TimeoutError:
            pass
        await old.client.disconnect()
        current = probe
    return current


async def client_worker(churn: Churn, cid: str, rng: random.Random) -> Session | None:
    """Drive one client id until the deadline; returns its live session, if any."""
    await asyncio.sleep(rng.uniform(0, 3.0))
    current: Session | None = None
    serial = 0
    while time.monotonic() < churn.deadline:
        if (
            current is not None
            and current.dropped.is_set()
            and current.cause == "restart"
            and rng.random() < DRAIN_RECONNECTS
        ):
            serial += 1
            current = await reconnect_after_drain(churn, current, cid, serial, rng)
            continue
        if current is not None and current.dropped.is_set():
            await dropped(churn, current)
            current = None
        nodes = churn.live_nodes()
        if not nodes:
            await asyncio.sleep(0.1)
            continue
        serial += 1
        if current is None:
            version = rng.choice((1, 2))
            current = await open_session(
                churn, cid, serial, rng.choice(nodes), version, rng.random() < 0.5
            )
            if current is None:
                await asyncio.sleep(rng.uniform(0.1, 0.5))
            continue
        roll = rng.random()
        if churn.no_moves and roll >= 0.72:
            roll = 0.0
        if roll >= 0.72:
            churn.moves_in_flight += 1
            try:
                current = await move_or_probe(churn, current, cid, serial, nodes, rng, roll)
            finally:
                churn.moves_in_flight -= 1
            continue
        if roll < 0.5:
            # Hold the connection for a while (or until it drops).
            try:
                async with asyncio.timeout(rng.uniform(0.5, 3.0)):
                    await current.dropped.wait()
            except TimeoutError:
                pass
        elif roll < 0.72:
            await end_and_expect_leave(churn, current)
            churn.count("disconnects")
            current = None
    if current is not None and current.dropped.is_set():
        await dropped(churn, current)
        current = None
    return current


async def reconnect_after_drain(
    churn: Churn, old: Session, cid: str, serial: int, rng: random.Random
) -> Session | None:
    """``old``'s node is draining (1012 "restart"): reconnect elsewhere at once, as the SDK
    client does. Reappearing within the grace, the client is not reported gone."""
    churn.count("drained")
    lost_at = time.monotonic()
    nodes = churn.live_nodes()
    new = None
    if nodes:
        version, supersede = rng.choice(((2, False), (2, True), (1, True)))
        node = rng.choice(nodes)
        new = await open_session(churn, cid, serial, node, version, supersede, gated=False)
    if new is None or (new.dropped.is_set() and not churn.log.of(new.token, "connected")):
        # It never reappeared: the drained node reports it gone once the grace passed.
        churn.count("drained_not_back")
        await end_and_expect_leave(churn, old)
        if new is not None:
            await dropped(churn, new)
        return None
    old.ended_at = time.monotonic()
    old.superseded_by = new
    await old.client.disconnect()
    if old.ended_at - lost_at < NODE_TTL / 2:
        churn.count("drained_moved")
        old.ended = "moved_on_drain"
    else:
        # Back too late for the grace (node_ttl): reported gone, or not.
        churn.count("drained_back_late")
        old.ended = "unclear"
    return new


async def dropped(churn: Churn, session: Session) -> None:
    """The server closed ``session`` (not the test)."""
    churn.count("dropped")
    if session.cause == "supersede":
        # Taken over by a newer connection, which may then have failed (Redis down):
        # at most one leave.
        session.ended = "unclear"
        session.ended_at = time.monotonic()
        await session.client.disconnect()
    else:
        await end_and_expect_leave(churn, session)


async def inject_faults(churn: Churn, tmp_path: Path) -> None:
    """Kill and restart a node, restart Redis, pause Redis; all during the churn."""
    start = time.monotonic()

    async def at(fraction: float) -> None:
        await asyncio.sleep(max(0.0, start + fraction * DURATION - time.monotonic()))

    async def restart(like: NodeProcess, name: str) -> None:
        url, prefix = like.args[2], like.args[3]
        reborn = NodeProcess(
            url,
            prefix,
            churn.log,
            tmp_path / name,
            heartbeat=HEARTBEAT,
            ttl=NODE_TTL,
            probe=PROBE_TIMEOUT,
        )
        await reborn.start()
        churn.nodes.append(reborn)

    await at(0.15)
    victim = churn.nodes[1]
    victim.kill()
    churn.timeline["kill"] = time.monotonic()
    churn.kills.append((victim, churn.timeline["kill"]))
    churn.count("faults")
    await at(0.3)
    await restart(victim, "node-reborn.log")
    # Known limit: a move whose kick of the old stream is lost in the outage leaves two
    # streams of one client on two nodes; after the restart both re-register, and the
    # first one wins, which may be the older. Moves stop a little before the restart
    # (the old streams are closed by then) so the checks stay exact.
    await at(0.5 - 4.0 / DURATION)
    churn.no_moves = True
    await at(0.5)
    quiet_deadline = time.monotonic() + 15.0
    while churn.moves_in_flight and time.monotonic() < quiet_deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    outage_start = time.monotonic()
    await asyncio.to_thread(churn.redis.restart, 0.3)
    churn.timeline["redis_restart"] = outage_start
    churn.no_moves = False
    churn.count("faults")
    # Until every node re-registered its clients, a takeover can slip through.
    churn.outage.append((outage_start, time.monotonic() + 5.0))
    await at(0.7)
    pause_ms = int(HEARTBEAT * 5 * 1000)  # longer than a heartbeat, shorter than the TTL
    churn.timeline["pause"] = time.monotonic()
    # Known limit: a probe that cannot be answered within PROBE_TIMEOUT because Redis is
    # paused takes the client over, as from a dead node (the old connection gets 4002).
    churn.probe_blind.append(
        (churn.timeline["pause"] - PROBE_TIMEOUT, churn.timeline["pause"] + pause_ms / 1000 + 1.0)
    )
    await asyncio.to_thread(churn.redis.command, "CLIENT", "PAUSE", str(pause_ms), "ALL")
    churn.count("faults")

    # A rolling restart: a node hands its clients to the others, leaves, comes back.
    await at(0.75)
    # Not the leader: its crash is the next fault.
    drained = min(churn.live_nodes(), key=lambda n: n.leader_since or 0.0)
    churn.timeline["drain"] = time.monotonic()
    await drained.drain()
    churn.count("faults")
    await restart(drained, "node-drained-reborn.log")

    # The cleanup leader crashes: another node takes the lock and reports its orphans.
    await at(0.85)
    leader = max(churn.live_nodes(), key=lambda n: n.leader_since or 0.0)
    leader.kill()
    churn.timeline["leader_kill"] = time.monotonic()
    churn.kills.append((leader, churn.timeline["leader_kill"]))
    churn.count("faults")
    await at(0.93)
    await restart(leader, "node-leader-reborn.log")


def note_history(churn: Churn, cid: str) -> None:
    """Add every connection of ``cid`` and what the nodes reported of it to the notes."""
    for session in churn.sessions:
        if session.cid == cid:
            churn.notes.append(
                f"   {session.token} on {session.node_id} ended={session.ended} "
                f"cause={session.cause} {churn.marks(session.started_at)} "
                f"{[(e.kind, e.node) for e in churn.log.of(session.token)]}"
            )


def check(churn: Churn, live: list[Session], registry: dict[str, int]) -> dict[str, int]:
    """Compare what the nodes reported with what the test did; counts of each problem."""
    problems = {
        "registry_mismatch": 0,
        "duplicate": 0,
        "missing": 0,
        "unexpected": 0,
        "wrong_node": 0,
    }
    expected_registry = {s.cid: s.node_id for s in live}
    for cid in set(expected_registry) | set(registry):
        if expected_registry.get(cid) != registry.get(cid):
            problems["registry_mismatch"] += 1
            churn.notes.append(
                f"mismatch {cid}: live on {expected_registry.get(cid)}, "
                f"registered on {registry.get(cid)}"
            )
            note_history(churn, cid)
    live_tokens = {s.token for s in live}
    log = churn.log
    for session in churn.sessions:
        connected = log.of(session.token, "connected")
        leaves = log.of(session.token, "disconnected", "orphaned")
        problems["duplicate"] += max(0, len(connected) - 1) + max(0, len(leaves) - 1)
        if any(e.node != session.node_id for e in connected + leaves):
            problems["wrong_node"] += 1
        if not connected and leaves and session.node not in churn.live_nodes():
            continue  # its node died between activation and the connected callback
        if (
            session.ended == "superseded"
            and session.cause != "supersede"
            and churn.in_outage(session.ended_at)
        ):
            # Known limit: the kick of a move made while Redis was restarting empty can
            # be lost with its data, and then the old node reports the leave: at most one.
            session.ended = "unclear"
        newer = session.superseded_by
        if (
            session.ended == "superseded"
            and newer is not None
            and newer.node_id == session.node_id
            and not log.of(newer.token, "connected")
        ):
            # Taken over here by a connection that closed before it was announced: the
            # client left, and its node reports the connection it had announced.
            session.ended = "unclear"
        if session.ended == "superseded" and churn.ended_as_its_node_died(session):
            # Known limit: a takeover the dying node was still processing (a reconnect
            # there that never activated) may end as a reported leave instead.
            session.ended = "unclear"
        if session.ended == "died_then_back":
            # Taken over before the leader cleaned the dead node up (no report), or the
            # cleanup came first (one orphan report by the leader). Never "disconnected":
            # the dead node cannot report.
            if len(leaves) == 1 and leaves[0].kind == "orphaned":
                churn.count("died_then_back_cleanup_first")
            elif not leaves:
                churn.count("died_then_back_taken_over")
            else:
                problems["unexpected"] += 1
                churn.notes.append(f"died then back {session.token} {connected + leaves}")
            continue
        if session.ended == "left" and session.cause == "supersede":
            # The node closed it as taken over while the test was closing it (the close
            # cause arrived after disconnect() returned): a move, or a leave.
            session.ended = "unclear"
        if (
            session.token in live_tokens
            or session.ended in ("superseded", "moved_on_drain")
            or not connected
        ):
            problems["unexpected"] += bool(leaves)
            if leaves:
                churn.notes.append(
                    f"unexpected {session.token} {connected + leaves} live="
                    f"{session.token in live_tokens} {churn.when(session)} cause={session.cause}"
                )
        elif session.ended == "unclear":
            churn.count(f"unclear_with_{len(leaves)}_leaves")
            churn.notes.append(
                f"unclear {session.token} {connected + leaves} {churn.when(session)} "
                f"cause={session.cause}"
            )
        elif session.ended == "left" and not leaves and churn.ended_as_its_node_died(session):
            churn.count("left_as_its_node_died_unreported")
        elif session.ended == "left" and not leaves:
            problems["missing"] += 1
            churn.notes.append(
                f"missing {session.token} on {session.node_id} {churn.when(session)}"
            )
            note_history(churn, session.cid)

    for token in churn.refused_tokens:
        problems["unexpected"] += bool(log.of(token))
        if log.of(token):
            churn.notes.append(f"unexpected for a refused connection {token}: {log.of(token)}")
    return problems


# Alone (make test runs it after the parallel pass): its faults are timed against short
# node TTLs. Beside other tests on 2 cores it failed twice in about a dozen runs (one
# client live on a node but not registered; one lifecycle event too many at a takeover
# during a Redis restart); alone it has not failed.
@pytest.mark.serial
async def test_registry_tells_the_truth_under_churn_and_faults(
    redis_server_factory: Any, tmp_path: Path
) -> None:
    redis: RedisServer = redis_server_factory()
    prefix = "churn"
    log = EventLog()
    nodes = [
        NodeProcess(
            redis.url,
            prefix,
            log,
            tmp_path / f"node{i}.log",
            heartbeat=HEARTBEAT,
            ttl=NODE_TTL,
            probe=PROBE_TIMEOUT,
        )
        for i in range(3)
    ]
    await asyncio.gather(*(node.start() for node in nodes))
    churn = Churn(redis, nodes, log, time.monotonic() + DURATION)
    settings = RedisSettings(url=redis.url, prefix=prefix)
    registry: MeshClientRedisRegistry[Any] = MeshClientRedisRegistry("_mc:app", redis=settings)
    live: list[Session] = []
    try:
        rng = random.Random(8)
        workers = [
            asyncio.create_task(client_worker(churn, f"c{i}", random.Random(rng.random())))
            for i in range(CLIENTS)
        ]
        faults = asyncio.create_task(inject_faults(churn, tmp_path))
        results = await asyncio.gather(*workers)
        await faults
        live = [s for s in results if s is not None]
        assert live, "no client survived the run"

        # Let the TTLs settle: the registry converges on the live connections.
        expected = {s.cid: s.node_id for s in live}
        snapshot: dict[str, int] = {}
        settle_deadline = time.monotonic() + 15.0
        while time.monotonic() < settle_deadline:
            snapshot = {c.client_id: c.node_id for c in await registry.list_clients()}
            if snapshot == expected:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # late callbacks would show up as duplicates
        problems = check(churn, live, snapshot)

        invoker: MeshClientService[Any] = MeshClientService(
            "app",
            _not_here,
            heartbeat_interval=HEARTBEAT,
            node_ttl=NODE_TTL,
            redis=settings,
            leader=LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
        )
        await invoker.start()
        try:
            gate = asyncio.Semaphore(50)

            async def call(session: Session) -> bool:
                async with gate:
                    reply = await invoker.invoke(
                        session.cid, "dNotify", DNotifyRequest(notification="hi").to_dict(), 5.0
                    )
                return isinstance(reply, dict) and reply.get("acknowledged") is True

            answers = await asyncio.gather(*(call(s) for s in live), return_exceptions=True)
        finally:
            await invoker.stop()
        invoked_ok = sum(answer is True for answer in answers)

        reported = len(log.events)
        for session in churn.sessions:
            churn.count(f"ended_{session.ended or 'live'}")
        print(
            f"\nchurn: clients={CLIENTS} connections={churn.counts.get('connections', 0)} "
            f"live={len(live)} events={reported} faults={churn.counts.get('faults', 0)} "
            f"counts={dict(sorted(churn.counts.items()))} problems={problems} "
            f"invoked_ok={invoked_ok}/{len(live)}"
        )
        (tmp_path / "notes.txt").write_text("\n".join(churn.notes))
        assert problems == dict.fromkeys(problems, 0), churn.notes[:40]
        assert churn.counts.get("takeover", 0) == 0
        assert invoked_ok == len(live), [a for a in answers if a is not True][:5]
    finally:
        await asyncio.gather(
            *(s.client.disconnect() for s in churn.sessions), return_exceptions=True
        )
        await asyncio.gather(*(node.close() for node in churn.nodes))


async def _not_here(client_id: str, _type: str, _data: Any, _timeout: float | None) -> Any:
    raise AssertionError(f"the invoker holds no clients ({client_id})")
