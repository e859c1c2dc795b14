"""A private local Redis Cluster (3 primaries + 3 replicas), for tests and benchmarks.

Six processes of the same binary :class:`~meshsrpc.redis_server.RedisServer` uses, with
``--cluster-enabled yes``; the slots are split in three equal ranges (as
``redis-cli --cluster create`` does) with ``CLUSTER ADDSLOTSRANGE``/``MEET``/
``REPLICATE`` sent directly, so no ``redis-cli`` is needed. :meth:`kill_primary`
crashes a primary so that its replica takes over, as in production.
"""

from __future__ import annotations

import socket
import time
from types import TracebackType

from .redis_server import RedisServer, free_port

__all__ = ["RedisClusterServer"]

SLOTS = 16384


class _ClusterNodeServer(RedisServer):
    """One cluster node: a RedisServer with cluster mode on and fast failure detection."""

    def __init__(self, *, node_timeout_ms: int) -> None:
        super().__init__(port=_cluster_port())
        self._node_timeout_ms = node_timeout_ms

    def _extra_args(self) -> list[str]:
        return [
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"{self._dir}/nodes.conf",
            "--cluster-node-timeout", str(self._node_timeout_ms),
            # A replica with any lag may take over: the tests kill primaries on purpose.
            "--cluster-replica-validity-factor", "0",
            "--cluster-require-full-coverage", "no",
            "--cluster-allow-reads-when-down", "yes",
        ]  # fmt: skip


def _cluster_port() -> int:
    # The cluster bus listens on port + 10000: both must be free.
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisClusterServer:
    """3 primaries with one replica each on loopback; start, inspect and break it."""

    def __init__(self, *, primaries: int = 3, node_timeout_ms: int = 1000) -> None:
        self.primary_count = primaries
        self.nodes = [
            _ClusterNodeServer(node_timeout_ms=node_timeout_ms) for _ in range(2 * primaries)
        ]

    @property
    def host(self) -> str:
        """The loopback address every node listens on."""
        return self.nodes[0].host

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every running node as a seed."""
        seeds = ",".join(f"{n.host}:{n.port}" for n in self.nodes if n.running)
        return f"redis+cluster://{seeds}"

    def start(self, timeout: float = 30.0) -> RedisClusterServer:
        """Start the six processes, assign the slots, pair the replicas, wait until OK."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.start()
        primaries = self.nodes[: self.primary_count]
        for i, node in enumerate(primaries):
            first = i * SLOTS // self.primary_count
            last = (i + 1) * SLOTS // self.primary_count - 1
            _expect_ok(node.command("CLUSTER", "ADDSLOTSRANGE", str(first), str(last)))
        for node in self.nodes[1:]:
            _expect_ok(node.command("CLUSTER", "MEET", node.host, str(self.nodes[0].port)))
        self._wait(deadline, lambda: all(self._knows_all(n) for n in self.nodes))
        for primary, replica in zip(primaries, self.nodes[self.primary_count :], strict=True):
            _expect_ok(replica.command("CLUSTER", "REPLICATE", self.node_id(primary)))
        self._wait(deadline, self._healthy)
        return self

    def node_id(self, node: RedisServer) -> str:
        """The cluster node id of ``node``."""
        return node.command("CLUSTER", "MYID").split(b"\r\n")[1].decode()

    def primaries(self) -> list[RedisServer]:
        """The running nodes that are primaries with slots now (after any failover)."""
        found: list[RedisServer] = []
        for node in self.nodes:
            if not node.running:
                continue
            info = _bulk(node.command("ROLE"))
            if b"master" in info and self._owns_slots(node):
                found.append(node)
        return found

    def owner_of(self, key: str) -> RedisServer:
        """The running primary that serves the slot of ``key``."""
        slot = int(self.nodes[0].command("CLUSTER", "KEYSLOT", key)[1:].split(b"\r\n")[0])
        for node in self.primaries():
            for first, last in self._slot_ranges(node):
                if first <= slot <= last:
                    return node
        raise LookupError(f"no running primary serves slot {slot}")

    def kill_primary(self, node: RedisServer, timeout: float = 30.0) -> None:
        """Crash primary ``node`` and wait until its replica took over and the cluster is OK."""
        node.kill()
        deadline = time.monotonic() + timeout
        self._wait(deadline, lambda: len(self.primaries()) == self.primary_count)
        self._wait(deadline, self._healthy)

    def close(self) -> None:
        """Kill every node and remove their directories."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _knows_all(self, node: RedisServer) -> bool:
        lines = _node_lines(node)
        return len(lines) == len(self.nodes) and all(b"handshake" not in x for x in lines)

    def _healthy(self) -> bool:
        running = [node for node in self.nodes if node.running]
        for node in running:
            if b"cluster_state:ok" not in _bulk(node.command("CLUSTER", "INFO")):
                return False
        # Every node agrees on the slot map (with replicas attached): a client reading it
        # from any seed then sends each command to the right primary, without MOVED.
        views = {node.command("CLUSTER", "SLOTS") for node in running}
        if len(views) != 1 or len(self.primaries()) != self.primary_count:
            return False
        lines = _node_lines(running[0])
        replicas = [x for x in lines if b"slave" in x.split(b" ")[2] and b"fail" not in x]
        return len(replicas) == len(running) - self.primary_count

    def _slot_ranges(self, node: RedisServer) -> list[tuple[int, int]]:
        for line in _node_lines(node):
            fields = line.split(b" ")
            if b"myself" in fields[2]:
                ranges = []
                for part in fields[8:]:
                    if part.startswith(b"["):
                        continue  # a slot being migrated
                    first, _, last = part.partition(b"-")
                    ranges.append((int(first), int(last or first)))
                return ranges
        return []

    def _owns_slots(self, node: RedisServer) -> bool:
        return bool(self._slot_ranges(node))

    @staticmethod
    def _wait(deadline: float, ready: object) -> None:
        assert callable(ready)
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the local Redis Cluster did not become ready")
            time.sleep(0.05)


def _bulk(reply: bytes) -> bytes:
    """The payload of a RESP bulk-string (or simple-string) reply."""
    if reply.startswith(b"$"):
        return reply.split(b"\r\n", 1)[1]
    return reply


def _node_lines(node: RedisServer) -> list[bytes]:
    """The lines of CLUSTER NODES as ``node`` sees the cluster."""
    text = _bulk(node.command("CLUSTER", "NODES"))
    return [line for line in text.splitlines() if len(line.split(b" ")) >= 8]


def _expect_ok(reply: bytes) -> None:
    if not reply.startswith(b"+OK"):
        raise RuntimeError(f"cluster setup failed: {reply[:200]!r}")
