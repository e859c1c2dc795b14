"""The ``meshsrpc`` command against a real 3-node mesh (child processes on a private Redis)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from meshsrpc import MeshService, RedisSettings
from meshsrpc.cli.inspect import MeshInspector
from redis.asyncio import Redis

from tests.cli.cli_support import MESH_KEY, ChildNode, cli_argv

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def inspector(redis_settings: RedisSettings) -> AsyncIterator[MeshInspector]:
    """Reads the mesh in-process, to wait for a state before running the command."""
    reader = MeshInspector(redis_settings, MESH_KEY)
    yield reader
    await reader.aclose()


async def eventually(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``predicate`` (async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


async def registered(inspector: MeshInspector, client_id: str, node_id: int) -> None:
    async def on_node() -> bool:
        entry = await inspector.client(client_id)
        return entry is not None and entry.state == "active" and entry.node_id == node_id

    await eventually(on_node)


async def test_nodes_prints_a_table_of_the_three_nodes(cli: Any, mesh3: list[ChildNode]) -> None:
    result = await cli("nodes", MESH_KEY)
    assert result.status == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["NODE", "HOSTNAME", "HEARTBEAT", "LEADER", "CLIENTS"]
    assert sorted(int(line.split()[0]) for line in lines[1:]) == sorted(n.node_id for n in mesh3)
    assert all("s ago" in line for line in lines[1:])


async def test_nodes_json_gives_heartbeat_age_leader_and_client_counts(
    cli: Any, mesh3: list[ChildNode], connect: Any, inspector: MeshInspector
) -> None:
    first, second, _third = mesh3
    await connect(first, "a1")
    await connect(first, "a2")
    await connect(second, "b1")
    await registered(inspector, "b1", second.node_id)
    await registered(inspector, "a2", first.node_id)

    async def leader_noted() -> Any:
        result = await cli("--json", "nodes", MESH_KEY)
        nodes = result.json()
        return nodes if sum(1 for n in nodes if n["leader"]) == 1 else None

    nodes = await eventually(leader_noted)
    counts = {node["node_id"]: node["clients"] for node in nodes}
    assert counts == {first.node_id: 2, second.node_id: 1, mesh3[2].node_id: 0}
    assert all(node["hostname"] and node["heartbeat_age"] < 2.0 for node in nodes)


async def test_clients_lists_every_client_with_node_and_metadata(
    cli: Any, mesh3: list[ChildNode], connect: Any, inspector: MeshInspector
) -> None:
    await connect(mesh3[0], "c1", meta={"room": "blue"})
    await connect(mesh3[1], "c2", meta={"room": "red"})
    await registered(inspector, "c1", mesh3[0].node_id)
    await registered(inspector, "c2", mesh3[1].node_id)

    table = await cli("clients", MESH_KEY)
    assert table.status == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == ["CLIENT", "NODE", "CONNECTED", "METADATA"]
    assert {line.split()[0] for line in lines[1:3]} == {"c1", "c2"}
    assert lines[-1] == "2 client(s)"

    rows = (await cli("--json", "clients", MESH_KEY)).json_lines()
    by_id = {row["client_id"]: row for row in rows}
    assert by_id["c1"]["node_id"] == mesh3[0].node_id
    assert by_id["c1"]["metadata"]["room"] == "blue"
    assert by_id["c2"]["connected_at"] > 0


async def test_clients_filters_by_node_metadata_and_limit(
    cli: Any, mesh3: list[ChildNode], connect: Any, inspector: MeshInspector
) -> None:
    for i in range(4):
        await connect(mesh3[i % 2], f"c{i}", meta={"room": "blue" if i < 3 else "red"})
    for i in range(4):
        await registered(inspector, f"c{i}", mesh3[i % 2].node_id)

    on_first = await cli("--json", "clients", MESH_KEY, "--node", str(mesh3[0].node_id))
    assert sorted(r["client_id"] for r in on_first.json_lines()) == ["c0", "c2"]
    red = await cli("--json", "clients", MESH_KEY, "--where", "room=red")
    assert [r["client_id"] for r in red.json_lines()] == ["c3"]
    limited = await cli("--json", "clients", MESH_KEY, "--limit", "2")
    assert len(limited.json_lines()) == 2


async def test_client_shows_one_client_in_full(
    cli: Any, mesh3: list[ChildNode], connect: Any, inspector: MeshInspector
) -> None:
    await connect(mesh3[2], "solo", meta={"user": "ada"})
    await registered(inspector, "solo", mesh3[2].node_id)

    text = await cli("client", MESH_KEY, "solo")
    assert text.status == 0, text.err
    assert "client:     solo" in text.out
    assert f"node:       {mesh3[2].node_id} (" in text.out
    assert '"user": "ada"' in text.out
    document = (await cli("--json", "client", MESH_KEY, "solo")).json()
    assert document["node_id"] == mesh3[2].node_id
    assert document["node_live"] is True
    assert document["state"] == "active"


async def test_an_unknown_client_exits_3(cli: Any, mesh3: list[ChildNode]) -> None:
    result = await cli("client", MESH_KEY, "nobody")
    assert result.status == 3
    assert "no client 'nobody'" in result.err


async def test_a_killed_node_shows_as_stale_then_disappears(
    cli: Any, mesh3: list[ChildNode], inspector: MeshInspector
) -> None:
    victim = mesh3[1]
    victim.kill()

    async def stale() -> bool:
        nodes = (await cli("--json", "nodes", MESH_KEY)).json()
        ages = {node["node_id"]: node["heartbeat_age"] for node in nodes}
        return ages.get(victim.node_id, 0) > 0.5

    await eventually(stale)

    async def gone() -> bool:
        nodes = (await cli("--json", "nodes", MESH_KEY)).json()
        return victim.node_id not in {node["node_id"] for node in nodes}

    await eventually(gone)
    table = await cli("nodes", MESH_KEY)
    assert len(table.out.splitlines()) == 3  # the header and the two live nodes


async def test_watch_sees_a_connect_a_move_and_an_orphan_report_in_order(
    redis_settings: RedisSettings, mesh3: list[ChildNode], connect: Any, inspector: MeshInspector
) -> None:
    leader = await eventually(_leader_of(inspector))
    first, second = [node for node in mesh3 if node.node_id != leader]
    watch = await asyncio.create_subprocess_exec(
        *cli_argv(redis_settings, "--json", "watch", MESH_KEY, "--count", "3", "--timeout", "60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert watch.stdout is not None and watch.stderr is not None
    lines: list[bytes] = []
    try:
        await eventually(_watching(redis_settings, inspector.keys.events))
        await connect(first, "c1")
        await registered(inspector, "c1", first.node_id)
        async with asyncio.timeout(30):
            lines.append(await watch.stdout.readline())
        await connect(second, "c1", supersede=True)
        await registered(inspector, "c1", second.node_id)
        # Killed only once its move event is out (a SIGKILL drops what it has queued).
        async with asyncio.timeout(30):
            lines.append(await watch.stdout.readline())
        second.kill()
        async with asyncio.timeout(60):
            out, err = await watch.communicate()
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    events = [json.loads(line) for line in [*lines, *out.splitlines()] if line.strip()]
    assert watch.returncode == 0, err.decode()
    assert [event["event"] for event in events] == ["connect", "move", "nodeDown"]
    assert events[0]["clientId"] == "c1" and events[0]["nodeId"] == first.node_id
    assert events[1]["fromNodeId"] == first.node_id and events[1]["nodeId"] == second.node_id
    assert events[2]["deadNodeId"] == second.node_id and events[2]["orphans"] == ["c1"]
    assert events[2]["nodeId"] == leader


async def test_watch_prints_readable_lines(
    redis_settings: RedisSettings, mesh3: list[ChildNode], connect: Any, inspector: MeshInspector
) -> None:
    watch = await asyncio.create_subprocess_exec(
        *cli_argv(redis_settings, "watch", MESH_KEY, "--count", "2", "--timeout", "60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        await eventually(_watching(redis_settings, inspector.keys.events))
        client = await connect(mesh3[0], "w1")
        await registered(inspector, "w1", mesh3[0].node_id)
        await client.disconnect()
        async with asyncio.timeout(60):
            out, _err = await watch.communicate()
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    lines = out.decode().splitlines()
    assert lines[0].startswith("watching mesh 'app'")
    assert f"connect     w1 on node {mesh3[0].node_id}" in lines[1]
    assert f"disconnect  w1 from node {mesh3[0].node_id}" in lines[2]


async def test_kick_without_yes_only_says_what_it_would_do(
    cli: Any, mesh3: list[ChildNode], connect: Any, inspector: MeshInspector
) -> None:
    await connect(mesh3[0], "k1")
    await registered(inspector, "k1", mesh3[0].node_id)
    result = await cli("kick", MESH_KEY, "k1")
    assert result.status == 2
    assert f"would disconnect client 'k1' on node {mesh3[0].node_id}; add --yes" in result.err
    assert await inspector.client("k1") is not None


async def test_kick_with_yes_disconnects_the_client_on_its_node(
    cli: Any, mesh3: list[ChildNode], connect: Any, inspector: MeshInspector
) -> None:
    await connect(mesh3[1], "k1")
    await registered(inspector, "k1", mesh3[1].node_id)

    result = await cli("--json", "kick", MESH_KEY, "k1", "--yes")
    assert result.status == 0, result.err
    assert result.json() == {"clientId": "k1", "nodeId": mesh3[1].node_id, "kicked": True}

    async def unregistered() -> bool:
        return await inspector.client("k1") is None

    await eventually(unregistered)


async def test_broadcast_without_yes_sends_nothing(cli: Any, mesh3: list[ChildNode]) -> None:
    result = await cli("broadcast", MESH_KEY, "note", '{"n": 1}')
    assert result.status == 2
    assert "would broadcast 'note' to 3 node(s); add --yes" in result.err


async def test_broadcast_with_yes_reaches_every_node(
    cli: Any, mesh3: list[ChildNode], redis_settings: RedisSettings
) -> None:
    result = await cli("broadcast", MESH_KEY, "note", '{"n": 1}', "--yes")
    assert result.status == 0, result.err
    assert result.out.strip() == "broadcast 'note' reached 3 node(s)"
    for node in mesh3:
        line = await node.read_line()
        assert line == 'note {"data": {"n": 1}, "sender": 0}'


async def test_broadcast_refuses_text_that_is_not_json(cli: Any, mesh3: list[ChildNode]) -> None:
    result = await cli("broadcast", MESH_KEY, "note", "{oops", "--yes")
    assert result.status == 2
    assert "JSON argument is not JSON" in result.err


async def test_an_unknown_mesh_key_lists_the_mesh_keys_found(
    cli: Any, mesh3: list[ChildNode], redis_settings: RedisSettings
) -> None:
    other = MeshService("plain", redis=redis_settings)
    await other.start()
    try:
        result = await cli("nodes", "desk")
    finally:
        await other.stop()
    assert result.status == 1
    assert (
        f"no live nodes under prefix '{redis_settings.prefix}', mesh key 'desk' — "
        "did you mean: app, plain?"
    ) in result.err


async def test_unreachable_redis_is_a_clear_error(redis_server_factory: Any) -> None:
    server = redis_server_factory()
    url = server.url
    server.close()
    result = await _run([sys.executable, "-m", "meshsrpc", "--redis-url", url, "nodes", "app"])
    assert result[0] == 1
    assert f"cannot reach Redis at {url}" in result[2]


async def test_no_redis_configured_names_the_variables() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = await _run([sys.executable, "-m", "meshsrpc", "nodes", "app"], env=env)
    assert result[0] == 2
    assert "MESH_REDIS_URL" in result[2]


async def test_the_meshsrpc_script_is_installed_with_the_runtime() -> None:
    script = Path(sys.executable).with_name("meshsrpc")
    result = await _run([str(script), "--help"])
    assert result[0] == 0
    for command in ("nodes", "clients", "client", "watch", "kick", "broadcast"):
        assert command in result[1]


def _leader_of(inspector: MeshInspector) -> Callable[[], Any]:
    async def leader() -> int | None:
        nodes = await inspector.nodes()
        leaders = [node.node_id for node in nodes if node.leader]
        return leaders[0] if len(leaders) == 1 else None

    return leader


def _watching(settings: RedisSettings, channel: str) -> Callable[[], Any]:
    async def subscribed() -> bool:
        assert settings.url is not None
        raw = Redis.from_url(settings.url)
        try:
            counts = await raw.pubsub_numsub(channel)
        finally:
            await raw.aclose()
        return bool(counts and counts[0][1] >= 1)

    return subscribed


async def _run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
