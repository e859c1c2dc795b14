"""Every Redis name of WIRE.md, from meshsrpc.keys (the one place they are built)."""

from __future__ import annotations

from meshsrpc.keys import (
    MeshKeys,
    RegistryKeys,
    client_mesh_key,
    leader_lock_key,
    replay_key_prefix,
)


def test_mesh_keys_and_channels() -> None:
    keys = MeshKeys("P", "K")
    assert (keys.next_id, keys.heartbeats, keys.nodes) == (
        "P:mesh:K:next_id",
        "P:mesh:K:heartbeats",
        "P:mesh:K:nodes",
    )
    assert (keys.broadcast, keys.inbox(7)) == ("P:mesh:K:broadcast", "P:mesh:K:node:7")


def test_registry_keys_live_beside_their_mesh() -> None:
    keys = RegistryKeys("P", client_mesh_key("app"))
    assert keys.clients == "P:mesh:_mc:app:clients"
    assert keys.node_clients(3) == "P:mesh:_mc:app:node:3:clients"
    assert keys.node_clients(3).startswith(keys.node_prefix)


def test_leader_lock_and_replay_keys() -> None:
    assert leader_lock_key("M", "K") == "M:leader:K"
    assert replay_key_prefix("P", "app") == "P:srpc:replay:app:"
