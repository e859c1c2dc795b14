"""Helpers of the hostile-peer tests: signed servers and clients, raw signed URLs."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from meshsrpc import SrpcClient, SrpcServer
from meshsrpc.loops import UVLOOP_ENV
from meshsrpc.srpc.auth import sign

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage
from tests.srpc._support import ClientFactory, ServerFactory, url_of

SECRET = "hostile-tests"

Server = SrpcServer[ClientMessage, ServerMessage]
Client = SrpcClient[ClientMessage, ServerMessage]


async def signed_server(make_server: ServerFactory, **kwargs: Any) -> Server:
    """A listening test server that checks signatures with :data:`SECRET`."""
    return await make_server(auth_secret=SECRET, **kwargs)


async def connected_client(
    make_client: ClientFactory, server: Server, client_id: str = "c1", **kwargs: Any
) -> Client:
    """A client signed with :data:`SECRET`, connected, that does not reconnect."""
    client = make_client(server, client_id, client_secret=SECRET, enable_reconnect=False, **kwargs)
    await client.connect()
    return client


def signed_url(server: Server, client_id: str = "raw", **overrides: str) -> str:
    """A connect URL signed with :data:`SECRET`; ``overrides`` replace query parameters."""
    query = {"authv": "1", "appv": "1.0.0", "ts": str(int(time.time() * 1000))}
    query |= {"id": f"{client_id}-{time.monotonic_ns()}", "cid": client_id, "_v": "2"}
    query["signature"] = sign(
        SECRET, query["authv"], query["appv"], query["ts"], query["id"], query["cid"]
    )
    query |= overrides
    return f"{url_of(server)}?{urlencode(query)}"


def on_uvloop() -> bool:
    """True when the running event loop is uvloop's."""
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


class ServerProcess:
    """``_server_child.py`` running in its own process (``async with``; killed on exit).

    It runs on the test's event loop (asyncio or uvloop) and, through the environment,
    on the test's SRPC transport.
    """

    def __init__(self, *args: str) -> None:
        self.args = args
        self.port = 0
        self.stderr = b""
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> ServerProcess:
        child = Path(__file__).with_name("_server_child.py")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(child),
            *self.args,
            env=os.environ | {UVLOOP_ENV: "1" if on_uvloop() else "0"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        async with asyncio.timeout(30):
            self.port = int(await self.process.stdout.readline())
        return self

    @property
    def url(self) -> str:
        """The server's ws:// URL."""
        return f"ws://127.0.0.1:{self.port}/srpc"

    def open_descriptors(self) -> int:
        """How many file descriptors the process has open (Linux: /proc)."""
        assert self.process is not None
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process is not None and self.process.returncode is None

    async def stop(self) -> bytes:
        """Kill the process (if still running); return everything it logged."""
        process = self.process
        if process is None:
            return self.stderr
        if process.returncode is None:
            process.kill()
        _, stderr = await process.communicate()
        self.stderr = stderr
        self.process = None
        return stderr

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
