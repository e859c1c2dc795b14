"""The ``meshsrpc`` command: look at a running mesh and act on it, from a shell.

Redis comes from the same settings as the services (``MESH_REDIS_URL``, ``REDIS_URL``,
..., ``MESH_REDIS_PREFIX``), or ``--redis-url`` / ``--prefix``. Human tables by
default; ``--json`` for scripts (one JSON document, or JSON lines for the streaming
``clients`` and ``watch``). Exit status: 0 done, 1 error, 2 usage or confirmation
needed, 3 no such client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any, TextIO

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import MeshError, RedisConfigurationError
from ..settings import RedisSettings, resolve_redis_settings
from .inspect import ClientEntry, MeshInspector, NodeEntry, UnknownMeshError, read_event

__all__ = ["main", "run"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3


class _Failed(Exception):
    """A clear error for the user, with the exit status."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshsrpc",
        description="Look at a running meshsrpc mesh and act on it.",
        epilog="Redis: --redis-url, else MESH_REDIS_URL / MESH_REDIS_HOST / REDIS_URL / ... "
        "as the services read them; key prefix: --prefix, else MESH_REDIS_PREFIX, "
        "REDIS_PREFIX, 'app'.",
    )
    parser.add_argument("--redis-url", help="Redis URL (default: from the environment)")
    parser.add_argument("--prefix", help="key prefix P (default: from the environment, else app)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    nodes = sub.add_parser("nodes", help="the mesh's nodes: heartbeat age, leader, clients")
    nodes.add_argument("mesh_key", metavar="MESH_KEY")

    clients = sub.add_parser("clients", help="connected clients (streamed, never all at once)")
    clients.add_argument("mesh_key", metavar="MESH_KEY")
    clients.add_argument("--node", type=int, help="only the clients of this node id")
    clients.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only clients whose metadata KEY equals VALUE (repeatable)",
    )
    clients.add_argument("--limit", type=int, help="stop after this many clients")

    client = sub.add_parser("client", help="one client in full")
    client.add_argument("mesh_key", metavar="MESH_KEY")
    client.add_argument("client_id", metavar="ID")

    watch = sub.add_parser("watch", help="connects, disconnects, moves, node deaths, live")
    watch.add_argument("mesh_key", metavar="MESH_KEY")
    watch.add_argument("--count", type=int, help="exit after this many events")
    watch.add_argument("--timeout", type=float, help="exit after this many seconds")

    kick = sub.add_parser("kick", help="disconnect a client (its node closes the stream)")
    kick.add_argument("mesh_key", metavar="MESH_KEY")
    kick.add_argument("client_id", metavar="ID")
    kick.add_argument("--yes", action="store_true", help="really do it")

    broadcast = sub.add_parser("broadcast", help="send a broadcast to every node")
    broadcast.add_argument("mesh_key", metavar="MESH_KEY")
    broadcast.add_argument("type", metavar="TYPE")
    broadcast.add_argument("data", metavar="JSON")
    broadcast.add_argument("--yes", action="store_true", help="really do it")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line and exit with its status."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    stdout = out or sys.stdout
    try:
        return asyncio.run(_run(args, stdout))
    except _Failed as exc:
        print(f"meshsrpc: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130


def _settings(args: argparse.Namespace) -> RedisSettings:
    try:
        settings = resolve_redis_settings(args.redis_url)
    except RedisConfigurationError as exc:
        raise _Failed(str(exc), EXIT_USAGE) from None
    if args.prefix:
        settings = replace(settings, prefix=args.prefix)
    if settings.is_memory:
        raise _Failed("memory:// meshes live inside one process; point at a Redis", EXIT_USAGE)
    return settings


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    settings = _settings(args)
    inspector = MeshInspector(settings, args.mesh_key)
    try:
        command = _COMMANDS[args.command]
        return await command(inspector, args, out)
    except UnknownMeshError as exc:
        raise _Failed(str(exc)) from None
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise _Failed(f"cannot reach Redis at {settings.describe()}: {exc}") from None
    except RedisError as exc:
        raise _Failed(f"Redis at {settings.describe()} answered an error: {exc}") from None
    finally:
        await inspector.aclose()


# --- commands ---------------------------------------------------------------------------


async def _nodes(inspector: MeshInspector, args: argparse.Namespace, out: TextIO) -> int:
    nodes = await inspector.nodes()
    if args.json:
        print(json.dumps([asdict(node) for node in nodes], indent=2), file=out)
        return 0
    rows = [_node_row(node) for node in nodes]
    _table(["NODE", "HOSTNAME", "HEARTBEAT", "LEADER", "CLIENTS"], rows, out)
    return 0


def _node_row(node: NodeEntry) -> list[str]:
    leader = "?" if node.leader is None else ("yes" if node.leader else "")
    return [
        str(node.node_id),
        node.hostname,
        f"{node.heartbeat_age:.1f}s ago",
        leader,
        "?" if node.clients is None else str(node.clients),
    ]


async def _clients(inspector: MeshInspector, args: argparse.Namespace, out: TextIO) -> int:
    where = _parse_where(args.where)
    if args.node is None:
        await inspector.nodes()  # an unknown mesh key is an error, not an empty list
    shown = 0
    rows: list[list[str]] = []
    header = ["CLIENT", "NODE", "CONNECTED", "METADATA"]
    async for entry in inspector.clients(node=args.node, where=where):
        if args.limit is not None and shown >= args.limit:
            break
        shown += 1
        if args.json:
            print(json.dumps(asdict(entry), ensure_ascii=False), file=out)
            continue
        rows.append(_client_row(entry))
        if len(rows) >= 500:  # print page by page: a million clients never sit in memory
            _table(header, rows, out)
            rows, header = [], []
    if not args.json:
        if rows or header:
            _table(header, rows, out)
        print(f"{shown} client(s)", file=out)
    return 0


def _client_row(entry: ClientEntry) -> list[str]:
    return [
        entry.client_id,
        str(entry.node_id),
        _when(entry.connected_at),
        _short(json.dumps(entry.metadata, ensure_ascii=False), 60),
    ]


async def _client(inspector: MeshInspector, args: argparse.Namespace, out: TextIO) -> int:
    entry = await inspector.client(args.client_id)
    if entry is None:
        raise _Failed(f"no client {args.client_id!r} in mesh {args.mesh_key!r}", EXIT_NOT_FOUND)
    live = {node.node_id: node for node in await _nodes_or_none(inspector)}
    node = live.get(entry.node_id)
    if args.json:
        document = asdict(entry)
        document["node_live"] = node is not None
        document["hostname"] = node.hostname if node else None
        print(json.dumps(document, indent=2, ensure_ascii=False), file=out)
        return 0
    where = f"{entry.node_id} ({node.hostname})" if node else f"{entry.node_id} (not live)"
    print(f"client:     {entry.client_id}", file=out)
    print(f"node:       {where}", file=out)
    print(f"state:      {entry.state}", file=out)
    print(f"connected:  {_when(entry.connected_at)}", file=out)
    metadata = json.dumps(entry.metadata, indent=2, ensure_ascii=False)
    print("metadata:   " + metadata.replace("\n", "\n            "), file=out)
    return 0


async def _nodes_or_none(inspector: MeshInspector) -> list[NodeEntry]:
    try:
        return await inspector.nodes()
    except UnknownMeshError:
        return []


async def _watch(inspector: MeshInspector, args: argparse.Namespace, out: TextIO) -> int:
    await inspector.nodes()
    pubsub = await inspector.subscribe_events()
    loop = asyncio.get_running_loop()
    deadline = None if args.timeout is None else loop.time() + args.timeout
    seen = 0
    if not args.json:
        print(f"watching mesh {args.mesh_key!r} (Ctrl-C to stop)", file=out, flush=True)
    try:
        while args.count is None or seen < args.count:
            left = 3600.0 if deadline is None else deadline - loop.time()
            if left <= 0:
                break
            event = await read_event(pubsub, min(left, 3600.0))
            if event is None:
                continue
            seen += 1
            line = json.dumps(event, ensure_ascii=False) if args.json else _describe(event)
            print(line, file=out, flush=True)
    finally:
        await pubsub.aclose()
    return 0


def _describe(event: dict[str, Any]) -> str:
    kind = event.get("event")
    node = event.get("nodeId")
    at = event.get("at")
    stamp = _clock(at) if isinstance(at, int) else "--:--:--"
    client = event.get("clientId")
    if kind == "connect":
        text = f"connect     {client} on node {node}"
    elif kind == "disconnect":
        text = f"disconnect  {client} from node {node}"
    elif kind == "move":
        text = f"move        {client} from node {event.get('fromNodeId')} to node {node}"
    elif kind == "nodeDown":
        orphans = event.get("orphans") or []
        listed = ", ".join(str(o) for o in orphans[:10]) + (" ..." if len(orphans) > 10 else "")
        text = (
            f"node down   node {event.get('deadNodeId')} (reported by leader {node}), "
            f"{len(orphans)} orphaned client(s){': ' + listed if orphans else ''}"
        )
    elif kind == "nodeLeft":
        text = f"node left   node {node} stopped with {len(event.get('clientIds') or [])} client(s)"
    else:
        text = f"{kind}  {json.dumps(event, ensure_ascii=False)}"
    return f"{stamp}  {text}"


async def _kick(inspector: MeshInspector, args: argparse.Namespace, out: TextIO) -> int:
    entry = await inspector.client(args.client_id)
    if entry is None:
        raise _Failed(f"no client {args.client_id!r} in mesh {args.mesh_key!r}", EXIT_NOT_FOUND)
    if not args.yes:
        raise _Failed(
            f"would disconnect client {args.client_id!r} on node {entry.node_id}; "
            "add --yes to do it",
            EXIT_USAGE,
        )
    try:
        node_id, kicked = await inspector.kick(args.client_id)
    except LookupError:
        raise _Failed(f"no client {args.client_id!r} (it just left)", EXIT_NOT_FOUND) from None
    except MeshError as exc:
        raise _Failed(str(exc)) from None
    if args.json:
        print(
            json.dumps({"clientId": args.client_id, "nodeId": node_id, "kicked": kicked}), file=out
        )
    elif kicked:
        print(f"client {args.client_id} disconnected by node {node_id}", file=out)
    else:
        print(f"node {node_id} no longer holds client {args.client_id}", file=out)
    return 0 if kicked else EXIT_NOT_FOUND


async def _broadcast(inspector: MeshInspector, args: argparse.Namespace, out: TextIO) -> int:
    try:
        data = json.loads(args.data)
    except ValueError as exc:
        raise _Failed(f"JSON argument is not JSON: {exc}", EXIT_USAGE) from None
    nodes = await inspector.nodes()
    if not args.yes:
        raise _Failed(
            f"would broadcast {args.type!r} to {len(nodes)} node(s); add --yes to do it",
            EXIT_USAGE,
        )
    reached = await inspector.broadcast(args.type, data)
    if args.json:
        print(json.dumps({"type": args.type, "nodesReached": reached}), file=out)
    else:
        print(f"broadcast {args.type!r} reached {reached} node(s)", file=out)
    return 0


_COMMANDS = {
    "nodes": _nodes,
    "clients": _clients,
    "client": _client,
    "watch": _watch,
    "kick": _kick,
    "broadcast": _broadcast,
}


# --- formatting -------------------------------------------------------------------------


def _parse_where(items: list[str]) -> dict[str, str]:
    where: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise _Failed(f"--where wants KEY=VALUE, got {item!r}", EXIT_USAGE)
        where[name] = value
    return where


def _table(header: list[str], rows: list[list[str]], out: TextIO) -> None:
    lines = [header, *rows] if header else rows
    if not lines:
        return
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=out)


def _when(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp} ({_age(time.time() - ms / 1000)} ago)"


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
