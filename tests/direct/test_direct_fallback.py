"""Peers that cannot be reached directly are called through Redis, as before."""

from __future__ import annotations

import logging
import socket

import pytest
from direct_helpers import SECRET, MakeMesh
from meshsrpc import DirectSettings, MeshService


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wrong_address() -> DirectSettings:
    return DirectSettings(secret=SECRET, advertise_port=closed_port(), retry_interval=0.01)


async def test_a_mixed_mesh_calls_both_ways(make_mesh: MakeMesh) -> None:
    # b stands for a TypeScript (or older, or direct-off) node: it advertises no address.
    a, b = await make_mesh(), await make_mesh(direct=False)
    a.register_handler("who", lambda data: "a")
    b.register_handler("who", lambda data: "b")
    assert b.direct_link is None
    for _ in range(5):
        assert await a.invoke(b.instance_id, "who", None) == "b"
        assert await b.invoke(a.instance_id, "who", None) == "a"
    assert a.direct_link is not None
    assert not a.direct_link.is_direct(b.instance_id)


async def test_a_wrong_advertised_address_falls_back_to_redis_and_warns_once(
    make_mesh: MakeMesh, caplog: pytest.LogCaptureFixture
) -> None:
    # Both wrong: otherwise b's replies would open a channel to a that serves both ways.
    a = await make_mesh(direct=wrong_address())
    b = await make_mesh(direct=wrong_address())
    b.register_handler("who", lambda data: "b")
    with caplog.at_level(logging.WARNING, logger="meshsrpc.direct"):
        for _ in range(30):  # connecting is retried every 10 ms meanwhile
            assert await a.invoke(b.instance_id, "who", None) == "b"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if f"no direct channel to node {b.instance_id} " in w]) == 1
    assert a.direct_link is not None and not a.direct_link.is_direct(b.instance_id)


async def test_an_address_of_another_node_is_not_taken_for_the_node_called(
    make_mesh: MakeMesh, caplog: pytest.LogCaptureFixture
) -> None:
    a, c = await make_mesh(), await make_mesh()
    assert c.direct_link is not None and c.direct_link.address is not None
    # b advertises c's address (a stale entry, or two nodes behind one NAT port).
    pointing_at_c = DirectSettings(secret=SECRET, advertise_port=c.direct_link.address.port)
    b = await make_mesh(direct=pointing_at_c)
    b.register_handler("who", lambda data: "b")
    with caplog.at_level(logging.WARNING, logger="meshsrpc.direct"):
        for _ in range(5):
            assert await a.invoke(b.instance_id, "who", None) == "b"
    assert any(f"not node {b.instance_id})" in r.getMessage() for r in caplog.records)


async def test_no_secret_turns_direct_channels_off_with_one_log_line(
    make_mesh: MakeMesh, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="meshsrpc.direct"):
        a = await make_mesh(direct=DirectSettings(secret=None))
    assert a.direct_link is None
    lines = [r.getMessage() for r in caplog.records if r.name == "meshsrpc.direct"]
    assert len(lines) == 1
    assert "direct channels off: no mesh secret" in lines[0]
    assert "MESH_DIRECT_SECRET" in lines[0]


async def test_the_environment_turns_direct_channels_on(
    make_mesh: MakeMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESH_DIRECT_SECRET", SECRET)
    monkeypatch.setenv("MESH_DIRECT_HOST", "127.0.0.1")
    a: MeshService = await make_mesh(direct=None)
    assert a.direct_link is not None


async def test_mesh_direct_0_turns_them_off_despite_a_secret(
    make_mesh: MakeMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESH_DIRECT_SECRET", SECRET)
    monkeypatch.setenv("MESH_DIRECT", "0")
    a = await make_mesh(direct=None)
    assert a.direct_link is None
