"""Shared helpers of the SRPC tests (the fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from meshsrpc import SrpcClient, SrpcServer
from meshsrpc.testing import eventually

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage

__all__ = ["ClientFactory", "ServerFactory", "eventually", "url_of"]

ServerFactory = Callable[..., Awaitable[SrpcServer[ClientMessage, ServerMessage]]]
ClientFactory = Callable[..., SrpcClient[ClientMessage, ServerMessage]]


def url_of(server: SrpcServer[Any, Any], path: str = "/srpc") -> str:
    """The ws:// URL of a listening test server."""
    return f"ws://127.0.0.1:{server.port}{path}"
