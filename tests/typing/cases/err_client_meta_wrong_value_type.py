"""a client's metadata value of the wrong type (ClientMeta.rating is a double)."""

from __future__ import annotations

from lobby.lobby_srpc import LobbySrpcClient


def make() -> LobbySrpcClient:
    return LobbySrpcClient("ws://127.0.0.1:1/srpc", "alice", client_meta={"rating": "high"})  # E: arg-type
