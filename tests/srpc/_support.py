"""Shared helpers of the SRPC tests (the fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from meshsrpc import SrpcClient, SrpcServer

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage

ServerFactory = Callable[..., Awaitable[SrpcServer[ClientMessage, ServerMessage]]]
ClientFactory = Callable[..., SrpcClient[ClientMessage, ServerMessage]]


def url_of(server: SrpcServer[Any, Any], path: str = "/srpc") -> str:
    """The ws:// URL of a listening test server."""
    return f"ws://127.0.0.1:{server.port}{path}"


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds (fails after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling state owned by the code under test
            await asyncio.sleep(0.01)
