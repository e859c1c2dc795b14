"""Helpers of the reliability tests: node child processes and the log of their callbacks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshsrpc import SrpcClient
from meshsrpc.testing import child_env

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage

NODE_CHILD = str(Path(__file__).with_name("node_child.py"))
ROOT = Path(__file__).resolve().parents[2]
SOAK = os.environ.get("MESHSRPC_SOAK") == "1"

Client = SrpcClient[ClientMessage, ServerMessage]


@dataclass
class Event:
    """One callback reported by a node: ``kind`` is connected, disconnected or orphaned."""

    kind: str
    cid: str
    token: str | None
    node: int  # the node the client was on (for orphans: the dead node)
    reporter: int
    t: float


@dataclass
class EventLog:
    """Every callback of every node, indexed by client id and by session token."""

    events: list[Event] = field(default_factory=list)
    by_token: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, line: dict[str, Any]) -> None:
        kind = line.get("ev")
        new: list[Event] = []
        if kind in ("connected", "disconnected"):
            new.append(Event(kind, line["cid"], line["s"], line["node"], line["node"], line["t"]))
        elif kind == "orphaned":
            for cid, token in line["clients"]:
                new.append(Event("orphaned", cid, token, line["dead"], line["node"], line["t"]))
        for event in new:
            self.events.append(event)
            if event.token is not None:
                self.by_token[event.token].append(event)
        if new:
            self.changed.set()

    def of(self, token: str, *kinds: str) -> list[Event]:
        return [e for e in self.by_token.get(token, []) if not kinds or e.kind in kinds]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                async with asyncio.timeout(min(remaining, 0.25)):
                    await self.changed.wait()
            except TimeoutError:
                pass
        return True


class NodeProcess:
    """One ``node_child.py`` process; its callback lines go to an :class:`EventLog`."""

    def __init__(
        self, redis_url: str, prefix: str, log: EventLog, stderr_path: Path, **options: Any
    ) -> None:
        self.args = [sys.executable, NODE_CHILD, redis_url, prefix] + [
            f"{name}={value}" for name, value in options.items()
        ]
        self.log = log
        self.stderr_path = stderr_path
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.node_id = 0
        self.stopped = asyncio.Event()
        self.leader_since: float | None = None  # when it said it became the cleanup leader
        self.draining = False
        self._ready: asyncio.Future[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/srpc"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout: float = 20.0) -> NodeProcess:
        self._ready = asyncio.get_running_loop().create_future()
        with self.stderr_path.open("ab") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=child_env(ROOT)
            )
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(timeout):
            await self._ready
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("ev") == "ready":
                self.port, self.node_id = message["port"], message["node"]
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
            elif message.get("ev") == "leader":
                self.leader_since = time.monotonic()
            elif message.get("ev") == "stopped":
                self.stopped.set()
            else:
                self.log.add(message)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError(f"node exited early; see {self.stderr_path}"))

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)

    async def terminate(self, timeout: float = 20.0) -> None:
        """SIGTERM: the node runs mesh_stop() and close(), then exits."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(timeout):
                await self.proc.wait()

    async def drain(self, timeout: float = 60.0) -> None:
        """SIGUSR1: the node runs drain(), mesh_stop() and close(), then exits."""
        if self.alive:
            assert self.proc is not None
            self.draining = True
            self.proc.send_signal(signal.SIGUSR1)
            async with asyncio.timeout(timeout):
                await self.proc.wait()

    async def close(self) -> None:
        self.kill()
        if self.proc is not None:
            await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
