"""a constructor option of the wrong type is an error."""

from __future__ import annotations

from lobby.lobby_srpc import LobbySrpcClient


def make() -> LobbySrpcClient:
    return LobbySrpcClient("ws://127.0.0.1:1/srpc", "alice", enable_reconnect="no")  # E: arg-type
