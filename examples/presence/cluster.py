"""Start presence nodes as child processes and drive them (the parent side of node.py).

Each node is ``python -m examples.presence.node`` with a pipe on stdin and stdout. The
parent sends commands, awaits their replies, and collects every event the nodes report
in one list with wall-clock timestamps. Children are killed when the cluster closes,
when the interpreter exits, and they stop by themselves when their stdin closes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Cluster", "NodeCommandError", "NodeEvent", "NodeProcess"]

REPO_ROOT = Path(__file__).resolve().parents[2]
# The mesh secret of the direct channels between the nodes this process starts.
_DIRECT_SECRET = secrets.token_hex(16)

_live_pids: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    # Last line of defence (e.g. the parent raised before its finally ran).
    for pid in list(_live_pids):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class NodeEvent:
    """Something a node reported: ``kind`` (connected, disconnected, orphaned, announcement)."""

    node: str
    kind: str
    at_ms: float
    fields: dict[str, Any] = field(default_factory=dict)


class NodeCommandError(Exception):
    """A command failed on the node; ``error_type`` is the exception's class name there."""

    def __init__(self, node: str, error_type: str, message: str) -> None:
        super().__init__(f"{node}: {error_type}: {message}")
        self.node = node
        self.error_type = error_type
        self.message = message


class NodeProcess:
    """One node child process and its control channel."""

    def __init__(self, cluster: Cluster, label: str, port: int) -> None:
        self.cluster = cluster
        self.label = label
        self.port = port
        self.instance_id = 0
        self.process: asyncio.subprocess.Process | None = None
        self.log_path = Path(tempfile.mkstemp(prefix=f"meshsrpc-{label}-", suffix=".log")[1])
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The node's SRPC endpoint."""
        return f"ws://127.0.0.1:{self.port}/srpc"

    @property
    def pid(self) -> int | None:
        """The child's process id once started."""
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        """True while the child runs."""
        return self.process is not None and self.process.returncode is None

    async def start(self, args: list[str], env: dict[str, str], within: float) -> None:
        """Spawn the child and wait for its ``ready`` line."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "examples.presence.node",
                "--label",
                self.label,
                "--port",
                str(self.port),
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                cwd=REPO_ROOT,
                env=env,
                limit=2**22,
            )
        _live_pids.add(self.process.pid)
        self._reader = asyncio.create_task(self._read())
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), within)
        except TimeoutError:
            raise RuntimeError(f"{self.label} did not start in {within} s") from None
        self.instance_id = int(ready["instanceId"])

    async def command(self, cmd: str, *, within: float = 15.0, **fields: Any) -> Any:
        """Send one command, return its result; NodeCommandError when it failed there."""
        reply = await self.command_reply(cmd, within=within, **fields)
        if not reply["ok"]:
            raise NodeCommandError(self.label, reply.get("errorType", "Error"), reply["error"])
        return reply.get("result")

    async def command_reply(
        self, cmd: str, *, within: float = 15.0, **fields: Any
    ) -> dict[str, Any]:
        """Send one command and return the whole reply line (with ``elapsedMs``)."""
        if self.process is None or self.process.stdin is None or not self.alive:
            raise RuntimeError(f"{self.label} is not running")
        command_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[command_id] = future
        line = json.dumps({"id": command_id, "cmd": cmd, **fields}) + "\n"
        self.process.stdin.write(line.encode())
        await self.process.stdin.drain()
        try:
            return await asyncio.wait_for(future, within)
        except TimeoutError:
            raise RuntimeError(f"{self.label}: {cmd} got no reply in {within} s") from None
        finally:
            self._replies.pop(command_id, None)

    def kill(self) -> None:
        """SIGKILL the child, as a crash would: no goodbye to the mesh."""
        if self.process is not None and self.alive:
            self.process.kill()

    async def stop(self, within: float = 10.0) -> None:
        """Ask the child to leave the mesh and exit; kill it if it does not."""
        if self.process is None:
            return
        if self.alive and self.process.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self.process.stdin.write(b'{"cmd": "stop"}\n')
                await self.process.stdin.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), within)
        if self.alive:
            self.process.kill()
        await self.process.wait()
        _live_pids.discard(self.process.pid)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def log_tail(self, lines: int = 20) -> str:
        """The end of the child's stderr, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"\n--- {self.label} stderr ---\n" + "\n".join(text) + "\n" if text else ""

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            kind = message.pop("type", None)
            if kind == "ready" and self._ready is not None and not self._ready.done():
                self._ready.set_result(message)
            elif kind == "reply":
                future = self._replies.get(message.get("id") or 0)
                if future is not None and not future.done():
                    future.set_result(message)
            elif kind == "event":
                at = float(message.pop("at"))
                message.pop("node", None)
                self.cluster.add_event(NodeEvent(self.label, message.pop("kind"), at, message))
        # stdout closed: the child is gone. Fail whoever still waits, at once.
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError(f"{self.label} exited before it was ready"))
        for future in self._replies.values():
            if not future.done():
                future.set_exception(RuntimeError(f"{self.label} exited"))


class Cluster:
    """Several nodes on one mesh, and everything they reported."""

    def __init__(
        self, redis_url: str, prefix: str, *, auth_secret: str | None = None, **options: float
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.auth_secret = auth_secret
        self.options = options
        self.nodes: dict[str, NodeProcess] = {}
        self.events: list[NodeEvent] = []
        self._changed = asyncio.Condition()

    def add_event(self, event: NodeEvent) -> None:
        """Record an event and wake whoever waits for one."""
        self.events.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def start_node(self, label: str, port: int, *, within: float = 30.0) -> NodeProcess:
        """Start one node and wait until it has joined the mesh."""
        node = NodeProcess(self, label, port)
        self.nodes[label] = node
        args = ["--redis", self.redis_url]
        for name, value in self.options.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        # The same prefix for the mesh and its leader lock: runs never see each other.
        env = {
            **os.environ,
            "MESH_REDIS_PREFIX": self.prefix,
            "MUTEX_REDIS_PREFIX": self.prefix,
            "PYTHONUNBUFFERED": "1",
            # Direct node-to-node channels, on loopback only: a secret for this run.
            "MESH_DIRECT_SECRET": os.environ.get("MESH_DIRECT_SECRET") or _DIRECT_SECRET,
            "MESH_DIRECT_HOST": "127.0.0.1",
        }
        if self.auth_secret is not None:
            env["SRPC_AUTH_SECRET"] = self.auth_secret
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        await node.start(args, env, within)
        return node

    async def wait_for(
        self, predicate: Callable[[NodeEvent], bool], *, within: float, after: int = 0
    ) -> NodeEvent:
        """The first event (from index ``after`` on) that matches; TimeoutError if none comes."""
        deadline = time.monotonic() + within
        async with self._changed:
            while True:
                for event in self.events[after:]:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no matching node event")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    async def close(self) -> None:
        """Stop every node that still runs (gracefully, then by force); drop their logs."""
        await asyncio.gather(*(n.stop() for n in self.nodes.values()), return_exceptions=True)
        for node in self.nodes.values():
            node.log_path.unlink(missing_ok=True)
