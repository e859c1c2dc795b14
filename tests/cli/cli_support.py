"""Helpers of the ``meshsrpc`` command's tests: node processes, running the command."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshsrpc import RedisSettings, SrpcClient

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage

CHILD = Path(__file__).with_name("cli_node.py")
MESH_KEY = "app"
CLI_TIMEOUT = 30.0

Client = SrpcClient[ClientMessage, ServerMessage]


@dataclass
class ChildNode:
    """One node process: its port, mesh instance id and the process."""

    process: asyncio.subprocess.Process
    port: int
    node_id: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/srpc"

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    async def read_line(self, timeout: float = 10.0) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            return (await self.process.stdout.readline()).decode().strip()


async def start_node(settings: RedisSettings) -> ChildNode:
    """Start a node process and wait for its ``<port> <id>`` line."""
    assert settings.url is not None and settings.prefix is not None
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), settings.url, settings.prefix, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode().split()
    except BaseException:
        process.kill()
        await process.wait()
        raise
    return ChildNode(process, int(line[0]), int(line[1]))


@dataclass
class CliResult:
    """What one run of the command gave."""

    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


Cli = Callable[..., "asyncio.Future[CliResult]"]


def cli_argv(settings: RedisSettings, *args: str) -> list[str]:
    """``python -m meshsrpc --redis-url U --prefix P <args>``."""
    assert settings.url is not None and settings.prefix is not None
    return [
        sys.executable, "-m", "meshsrpc", "--redis-url", settings.url,
        "--prefix", settings.prefix, *args,
    ]  # fmt: skip


async def run_cli(argv: list[str]) -> CliResult:
    """Run the command to its end (bounded)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(CLI_TIMEOUT):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())
