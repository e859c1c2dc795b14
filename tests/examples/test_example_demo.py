"""The demo's scenario (make demo) with short TTLs: the facts of its transcript."""

from __future__ import annotations

import io
import os
import signal
import sys
from collections.abc import Callable

import pytest
from meshsrpc.redis_server import RedisServer

from examples.demo import CLIENTS, FLEET, RedisGoneError, run_demo


async def test_demo_scenario(
    redis_server: RedisServer,
    mesh_prefix: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # run_demo sets SRPC_AUTH_SECRET for its nodes when it is unset; set it here so that
    # it is removed again, or every later test's unsigned client would get HTTP 403.
    monkeypatch.setenv("SRPC_AUTH_SECRET", "demo-test-secret")
    # The transcript goes to stdout, so a failing run shows it (and the nodes' logs).
    # node_ttl stays well above the worst stall of a node on a loaded 2-core machine,
    # or a live node could be declared dead.
    report = await run_demo(
        redis_server.url, out=sys.stdout, heartbeat=0.4, node_ttl=2.0, prefix=mesh_prefix
    )
    transcript = capsys.readouterr().out
    ids = report.node_ids
    assert sorted(ids) == ["node1", "node2", "node3", "node4"]
    assert len(set(ids.values())) == 4

    connected = {(e.fields["clientId"], e.node) for e in report.events if e.kind == "connected"}
    assert set(CLIENTS.items()) <= connected

    # 1. node 3 calls alice, whose stream is on node 1
    assert report.invoke["acknowledged"] is True
    assert report.invoke["received"] == "hello from node 3"
    assert report.invoke["sentFromNode"] == ids["node3"]

    # 2. one broadcast reaches every node, and each node shows it to its own clients
    assert report.broadcast_receivers == ["node1", "node2", "node3"]
    assert report.clients_notified == len(CLIENTS)

    # 3. metadata changed from node 3 lands in node 1's stream.meta and in the registry
    assert report.metadata["updated"] is True
    assert report.metadata["stream"]["status"] == "busy"
    assert report.metadata["registry"] == {
        "displayName": "Alice",
        "status": "busy",
        "device": "phone",
    }

    # 4. bob moves to node 3: old stream closed as superseded, no disconnect callback
    assert report.supersede["oldClientCauses"] == ["supersede"]
    assert report.supersede["oldNodeStillHasStream"] is False
    assert report.supersede["newOwner"] == ids["node3"]
    assert report.supersede["disconnectedEvents"] == []

    # 5. node 2 killed: the leader reports its orphaned clients exactly once, without
    #    dave, who reconnected to node 3 in the meantime
    assert len(report.orphaned) == 1
    orphaned = report.orphaned[0]
    assert orphaned.fields["deadNode"] == ids["node2"]
    assert orphaned.fields["clients"] == ["carol"]
    assert orphaned.node != "node2"
    #    a call to carol while node 2 is dead but not yet cleaned up times out; after
    #    the cleanup she is simply not found
    assert report.dead_node_calls["during"] == "MeshRequestTimeoutError"
    assert report.dead_node_calls["after"] == "ClientNotFoundError"

    # 6. the registry at the end
    final = {c["clientId"]: c["nodeId"] for c in report.final_clients}
    assert final == {
        "alice": ids["node1"],
        "bob": ids["node3"],
        "dave": ids["node3"],
        "erin": ids["node3"],
    }
    assert report.presence["carol"]["online"] is False
    assert report.presence["carol"]["reason"] == f"node {ids['node2']} died"
    assert all(report.presence[c]["online"] for c in final)

    # 7. the meshsrpc command shows the two live nodes and the four clients
    node_rows = report.operator["nodes"].splitlines()[1:]
    assert sorted(int(row.split()[0]) for row in node_rows) == sorted([ids["node1"], ids["node3"]])
    assert report.operator["clients"].splitlines()[-1] == "4 client(s)"
    assert "$ meshsrpc nodes presence" in transcript

    # 8. a rolling restart: node 3 drains; its users and the SDK fleet all move (node 1
    #    takes the users over: node 3 says "not held"), and nobody is reported gone
    drain = report.drain
    assert drain["userCauses"] == {"bob": ["restart"], "dave": ["restart"], "erin": ["restart"]}
    assert {"bob", "dave", "erin"} <= set(drain["moved"])
    assert drain["fleetBack"] == FLEET
    assert drain["falseLeaves"] == []

    # 9. the leader (node 1) SIGKILLed: the fleet is back on node 4 long before node 1 is
    #    cleaned up; node 4, the new leader, reports only the users that did not move, once
    crash = report.leader_crash
    assert crash["fleetBack"] == FLEET
    assert all(crash["owners"][f"fleet{i:02d}"] == ids["node4"] for i in range(FLEET))
    assert len(crash["reports"]) == 1
    orphan_report = crash["reports"][0]
    assert orphan_report.node == "node4"
    assert orphan_report.fields["deadNode"] == ids["node1"]
    assert sorted(orphan_report.fields["clients"]) == ["alice", "bob", "dave", "erin"]
    assert "drain() returned after" in transcript
    assert "orphaned clients" in transcript and "after the SIGKILL" in transcript

    # every node process is gone
    for pid in report.pids:
        assert not _alive(pid), f"node process {pid} is still running"
    # what "declared dead after" measures from is said, not left to guess
    assert set(report.declared_dead) == {"sinceKill", "sinceLastHeartbeat"}
    assert "node 2 declared dead" in transcript
    assert "after its last heartbeat" in transcript and "after the SIGKILL" in transcript
    assert "node_ttl 2 s counts from the last heartbeat" in transcript


class _KillRedisOn(io.StringIO):
    """Demo output that stops the Redis (SIGINT, as a Ctrl-C does) once ``marker`` shows."""

    def __init__(self, marker: str, pid: int) -> None:
        super().__init__()
        self.marker = marker
        self.pid = pid

    def write(self, text: str) -> int:
        if self.marker in text and self.pid:
            os.kill(self.pid, signal.SIGINT)
            self.pid = 0
        return super().write(text)


async def test_the_demo_says_so_when_its_private_redis_dies(
    redis_server_factory: Callable[[], RedisServer], mesh_prefix: str
) -> None:
    redis = redis_server_factory()
    assert redis.pid is not None
    pid = redis.pid
    out = _KillRedisOn("Clients connect", pid)
    with pytest.raises(RedisGoneError) as gone:
        await run_demo(
            redis.url,
            out=out,
            heartbeat=0.4,
            node_ttl=2.0,
            prefix=mesh_prefix,
            redis_server=redis,
        )
    text = str(gone.value)
    assert f"private Redis (pid {pid})" in text
    assert "Ctrl-C" in text and "the demo stops here" in text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose; only a running process counts.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False
