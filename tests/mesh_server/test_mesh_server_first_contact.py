"""What a new user of MeshSrpcServer sees first: errors that name the fix, when the
environment is read, the start log line, and the node's place in the mesh (issue 15,
items 7, 8 and 13)."""

from __future__ import annotations

import logging
import os

import pytest
from meshsrpc import (
    ClientNotFoundError,
    MeshConnectionError,
    MeshNode,
    MeshNotRunningError,
    MeshSrpcServer,
    RedisConfigurationError,
)
from meshsrpc.redis_server import RedisServer, free_port
from meshsrpc.settings import RedisSettings

from tests.generated.sgnl24.TestRpc import ClientMessage, DNotifyRequest, ServerMessage
from tests.mesh_server.mesh_server_support import FAST, MakeClient, MakeNode, Node, eventually

SECRET = "first-contact"


async def test_invoke_before_mesh_start_says_the_mesh_is_not_running(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node(start=False, auth_secret=SECRET)
    await make_client(node, "c1", client_secret=SECRET).connect()
    with pytest.raises(ClientNotFoundError) as not_found:
        await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
    text = str(not_found.value)
    assert "mesh is not running" in text and "mesh_start()" in text
    assert "connected to this server" in text
    assert "not connected to any node" not in text
    assert not_found.value.client_id == "c1"


async def test_invoke_after_mesh_stop_says_the_mesh_is_not_running(make_node: MakeNode) -> None:
    node = await make_node(auth_secret=SECRET)
    await node.mesh_stop()
    with pytest.raises(ClientNotFoundError, match="mesh is not running"):
        await node.invoke("nobody", "dNotify", DNotifyRequest(notification="x"))


async def test_an_unknown_client_of_a_running_mesh_is_not_connected_to_any_node(
    make_node: MakeNode,
) -> None:
    node = await make_node(auth_secret=SECRET)
    with pytest.raises(ClientNotFoundError, match="not connected to any node"):
        await node.invoke("nobody", "dNotify", DNotifyRequest(notification="x"))


# --- where Redis is: read at mesh_start(), one rule for every service (item 8) ---


def _forget_redis_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("MESH_REDIS_", "MUTEX_REDIS_", "REDIS_")):
            monkeypatch.delenv(name)


def _unconfigured_node() -> Node:
    return MeshSrpcServer(
        ClientMessage, ServerMessage, mesh_key="first", auth_secret=SECRET, **FAST
    )


async def test_the_environment_is_read_at_mesh_start_not_at_construction(
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisServer,
    mesh_prefix: str,
    make_client: MakeClient,
) -> None:
    _forget_redis_env(monkeypatch)
    node = _unconfigured_node()  # nothing configured yet: fine until mesh_start()
    monkeypatch.setenv("MESH_REDIS_URL", redis_server.url)
    monkeypatch.setenv("MESH_REDIS_PREFIX", mesh_prefix)
    await node.listen("127.0.0.1", 0)
    try:
        await node.mesh_start()
        await make_client(node, "c1", client_secret=SECRET).connect()
        await eventually(lambda: node.client_registry.get_client("c1"))
        response = await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
        assert response.acknowledged
        registered = await node.client_registry.get_client("c1")
        assert registered is not None and registered.node_id == node.mesh_instance_id
    finally:
        await node.mesh_stop()
        await node.close()


async def test_nothing_configured_fails_at_mesh_start_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forget_redis_env(monkeypatch)
    node = _unconfigured_node()
    try:
        with pytest.raises(RedisConfigurationError, match="MESH_REDIS_URL"):
            await node.mesh_start()
    finally:
        await node.close()


async def test_a_misspelled_scheme_fails_at_mesh_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forget_redis_env(monkeypatch)
    monkeypatch.setenv("MESH_REDIS_URL", "reddis://127.0.0.1:6379/0")
    node = _unconfigured_node()
    try:
        with pytest.raises(RedisConfigurationError, match=r"\(from MESH_REDIS_URL\).*memory://"):
            await node.mesh_start()
    finally:
        await node.close()


async def test_unreachable_redis_fails_at_mesh_start_naming_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forget_redis_env(monkeypatch)
    url = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("REDIS_URL", url)
    node = _unconfigured_node()
    try:
        with pytest.raises(MeshConnectionError, match=f"{url} \\(from REDIS_URL\\)"):
            await node.mesh_start()
        assert node.mesh_instance_id == 0
    finally:
        await node.close()


class _RecordingGuard:
    def __init__(self) -> None:
        self.keys: list[str] = []

    async def first_use(self, key: str, ttl: float) -> bool:
        self.keys.append(key)
        return True


async def test_a_replay_guard_set_before_mesh_start_is_kept(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node(start=False, auth_secret=SECRET)
    guard = _RecordingGuard()
    node.set_replay_guard(guard)
    await node.mesh_start()  # would otherwise switch to the Redis guard
    await make_client(node, "c1", client_secret=SECRET).connect()
    assert len(guard.keys) == 1


# --- where this node is and what it does (item 13) ---


async def test_mesh_start_logs_one_info_line_with_engine_prefix_key_node_and_role(
    make_node: MakeNode, redis_settings: RedisSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="meshsrpc")
    # Not listening: listen() logs the auth mode on a line of its own.
    # Direct channels off: with MESH_DIRECT_SECRET set (make test's second pass), they
    # say where they listen on an INFO line of their own.
    node = await make_node(auth_secret=SECRET, listen=False, direct=False)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [
        f"mesh '_mc:app': node {node.mesh_instance_id} started on {redis_settings.url}, "
        f"key prefix {redis_settings.prefix!r}, the cleanup leader"
    ]


async def test_the_first_node_leads_and_the_second_does_not(make_node: MakeNode) -> None:
    first = await make_node(auth_secret=SECRET)
    second = await make_node(auth_secret=SECRET)
    assert first.is_leader and not second.is_leader


async def test_get_nodes_lists_every_node_and_marks_this_one(make_node: MakeNode) -> None:
    first = await make_node(auth_secret=SECRET)
    second = await make_node(auth_secret=SECRET)
    nodes = await second.get_nodes()
    assert [(n.instance_id, n.self) for n in nodes] == [
        (first.mesh_instance_id, False),
        (second.mesh_instance_id, True),
    ]
    assert all(isinstance(n, MeshNode) for n in nodes)


async def test_get_nodes_before_mesh_start_says_the_mesh_is_not_running(
    make_node: MakeNode,
) -> None:
    node = await make_node(start=False, auth_secret=SECRET)
    assert not node.is_leader
    with pytest.raises(MeshNotRunningError, match="not running"):
        await node.get_nodes()
