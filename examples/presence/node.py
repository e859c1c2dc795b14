"""One presence node driven over stdin/stdout, for the demo and the tests.

The parent writes one JSON command per line on stdin (``{"id": 1, "cmd": "invoke_notify",
...}``) and reads JSON lines on stdout: ``{"type": "ready", ...}`` once, ``{"type":
"reply", "id": 1, "ok": true, "result": ...}`` per command, and ``{"type": "event",
"kind": "connected", ...}`` whenever something happens on the node. Logs go to stderr.
The node stops gracefully on ``{"cmd": "stop"}`` or when stdin closes, so it never
outlives its parent; ``{"cmd": "drain"}`` hands its clients to the other nodes first
(``drain()``, as in a rolling restart) and answers once they are gone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import meshsrpc.loops
from meshsrpc import LeaderOptions, RegisteredClient

from .generated.presence import DNotifyRequest
from .server import PresenceServer

Command = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlledNode:
    """A PresenceServer plus the command table of the control channel."""

    def __init__(self, label: str, out: TextIO, server: PresenceServer) -> None:
        self.label = label
        self.out = out
        self.server = server
        self.stopping = asyncio.Event()
        server.listeners.append(lambda kind, fields: self.send("event", kind=kind, **fields))
        self.commands: dict[str, Command] = {
            "status": self.status,
            "invoke_notify": self.invoke_notify,
            "broadcast_announcement": self.broadcast_announcement,
            "update_meta": self.update_meta,
            "get_client": self.get_client,
            "list_clients": self.list_clients,
            "stream_meta": self.stream_meta,
            "presence": self.presence,
            "stop": self.stop,
            "drain": self.drain,
        }

    def send(self, type_: str, **fields: Any) -> None:
        """Write one protocol line (wall-clock ms, so the parent can time across processes)."""
        line = {"type": type_, "node": self.label, "at": time.time() * 1000, **fields}
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()

    async def handle(self, raw: str) -> None:
        """Run one command line and answer it; a failure is an error reply, never fatal."""
        try:
            message = json.loads(raw)
            command = self.commands[message["cmd"]]
        except (ValueError, KeyError, TypeError) as exc:
            self.send("reply", id=None, ok=False, error=f"bad command {raw!r}: {exc}")
            return
        started = time.perf_counter()
        try:
            result = await command(message)
        except Exception as exc:
            self.send(
                "reply",
                id=message.get("id"),
                ok=False,
                error=str(exc),
                errorType=type(exc).__name__,
                elapsedMs=(time.perf_counter() - started) * 1000,
            )
        else:
            self.send(
                "reply",
                id=message.get("id"),
                ok=True,
                result=result,
                elapsedMs=(time.perf_counter() - started) * 1000,
            )

    async def status(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "instanceId": self.server.mesh_instance_id,
            "streams": sorted(self.server.streams_by_client_id),
        }

    async def invoke_notify(self, message: dict[str, Any]) -> dict[str, Any]:
        reply = await self.server.invoke_d_notify(
            message["clientId"],
            DNotifyRequest(
                from_client_id=message.get("from", ""),
                text=message["text"],
                sent_from_node=self.server.mesh_instance_id,
            ),
            timeout=message.get("timeout", 5.0),
        )
        return {"acknowledged": reply.acknowledged}

    async def broadcast_announcement(self, message: dict[str, Any]) -> None:
        await self.server.broadcast_announcement(
            {"text": message["text"], "fromNode": self.server.mesh_instance_id}
        )

    async def update_meta(self, message: dict[str, Any]) -> bool:
        return await self.server.update_client_metadata(message["clientId"], message["metadata"])

    async def get_client(self, message: dict[str, Any]) -> dict[str, Any] | None:
        client = await self.server.client_registry.get_client(message["clientId"])
        return _client_json(client) if client else None

    async def list_clients(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        clients = await self.server.client_registry.list_clients()
        return [_client_json(c) for c in sorted(clients, key=lambda c: c.client_id)]

    async def stream_meta(self, message: dict[str, Any]) -> dict[str, Any] | None:
        stream = self.server.streams_by_client_id.get(message["clientId"])
        return dict(stream.meta) if stream else None

    async def presence(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            cid: {"online": r.online, "nodeId": r.node_id, "reason": r.reason}
            for cid, r in sorted(self.server.presence.items())
        }

    async def stop(self, message: dict[str, Any]) -> None:
        self.stopping.set()

    async def drain(self, message: dict[str, Any]) -> None:
        """A rolling restart: hand every client to the other nodes, then stop."""
        await self.server.drain(timeout=message.get("grace"))
        self.stopping.set()


def _client_json(client: RegisteredClient[Any]) -> dict[str, Any]:
    return {
        "clientId": client.client_id,
        "nodeId": client.node_id,
        "connectedAt": client.connected_at,
        "metadata": client.metadata,
    }


async def read_commands(node: ControlledNode) -> None:
    """Feed stdin lines to the node until EOF, then ask it to stop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()
    while line := await reader.readline():
        # Commands run concurrently: a slow invoke must not hold up a status query.
        task = asyncio.create_task(node.handle(line.decode()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    node.stopping.set()


async def run(args: argparse.Namespace, out: TextIO) -> None:
    """Start the node, announce it, serve commands, stop cleanly."""
    server = PresenceServer(
        mesh_key=args.mesh_key,
        heartbeat_interval=args.heartbeat,
        node_ttl=args.node_ttl,
        request_timeout=args.request_timeout,
        leader=LeaderOptions(
            ttl=args.node_ttl, renewal_interval=args.heartbeat, retry_delay=args.heartbeat
        ),
        redis=args.redis,
    )
    node = ControlledNode(args.label, out, server)
    await server.listen("127.0.0.1", args.port)
    try:
        async with server:  # joins the mesh; leaves it and closes the server on the way out
            node.send("ready", instanceId=server.mesh_instance_id, port=args.port, pid=os.getpid())
            reader = asyncio.create_task(read_commands(node))
            try:
                await node.stopping.wait()
            finally:
                reader.cancel()
    finally:
        node.send("stopped")


def main() -> None:
    """``python -m examples.presence.node --label node1 --port 8001 --redis URL``."""
    parser = argparse.ArgumentParser(description="a presence node on a control channel")
    parser.add_argument("--label", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--mesh-key", default="presence")
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--node-ttl", type=float, default=3.0)
    parser.add_argument("--request-timeout", type=float, default=5.0)
    args = parser.parse_args()
    # The protocol owns stdout; anything else printed by accident goes to stderr.
    out = sys.stdout
    sys.stdout = sys.stderr
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format=f"{args.label} %(name)s %(message)s"
    )
    meshsrpc.loops.run(run(args, out))


if __name__ == "__main__":
    main()
