"""SqliteClientRegistry: the client registry backend on SQLite (see the package docstring)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from meshsrpc import ClientConflictError, RegisteredClient
from meshsrpc.registry import decode_metadata, encode_metadata, now_ms

__all__ = ["SqliteClientRegistry"]

TMeta = TypeVar("TMeta")
T = TypeVar("T")

_Row = tuple[str, int, int, str | None]


class SqliteClientRegistry(Generic[TMeta]):
    """Registry backend in one SQLite table; several processes may share the file."""

    def __init__(self, path: str, *, table: str = "mesh_clients") -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
            raise ValueError(f"not a plain table name: {table!r}")
        self._table = table
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " client_id TEXT PRIMARY KEY,"
            " node_id INTEGER NOT NULL,"
            " connected_at INTEGER NOT NULL,"
            " state TEXT NOT NULL,"  # 'active' or 'pending'
            " metadata TEXT"  # JSON text; NULL = no metadata
            ")"
        )
        self._db.execute(f"CREATE INDEX IF NOT EXISTS {table}_node ON {table} (node_id)")

    async def register(
        self, client_id: str, node_id: int, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Make ``node_id`` the owner; return the node superseded, or None."""
        text = encode_metadata(metadata)
        return await self._run(
            lambda db: self._write(db, client_id, node_id, text, allow_supersede, "active")
        )

    async def reserve(
        self, client_id: str, node_id: int, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Register as ``pending`` (invisible until :meth:`activate`)."""
        text = encode_metadata(metadata)
        return await self._run(
            lambda db: self._write(db, client_id, node_id, text, allow_supersede, "pending")
        )

    async def activate(self, client_id: str, node_id: int, metadata: TMeta) -> bool:
        """Make this node's reservation visible; keeps connected_at."""
        text = encode_metadata(metadata)
        sql = (
            f"UPDATE {self._table} SET state = 'active', metadata = ?"
            " WHERE client_id = ? AND node_id = ?"
        )
        return await self._run(lambda db: db.execute(sql, (text, client_id, node_id)).rowcount > 0)

    async def unregister(self, client_id: str, node_id: int) -> bool:
        """Remove the client if ``node_id`` owns it."""
        sql = f"DELETE FROM {self._table} WHERE client_id = ? AND node_id = ?"
        return await self._run(lambda db: db.execute(sql, (client_id, node_id)).rowcount > 0)

    async def update_metadata(self, client_id: str, node_id: int, metadata: TMeta) -> bool:
        """Replace the metadata if ``node_id`` owns the client."""
        text = encode_metadata(metadata)
        sql = f"UPDATE {self._table} SET metadata = ? WHERE client_id = ? AND node_id = ?"
        return await self._run(lambda db: db.execute(sql, (text, client_id, node_id)).rowcount > 0)

    async def get_client(self, client_id: str) -> RegisteredClient[TMeta] | None:
        """The active client, or None."""
        sql = (
            f"SELECT client_id, node_id, connected_at, metadata FROM {self._table}"
            " WHERE client_id = ? AND state = 'active'"
        )
        rows = await self._run(lambda db: db.execute(sql, (client_id,)).fetchall())
        return _client(rows[0]) if rows else None

    async def list_clients(self) -> list[RegisteredClient[TMeta]]:
        """Every active client."""
        sql = (
            f"SELECT client_id, node_id, connected_at, metadata FROM {self._table}"
            " WHERE state = 'active'"
        )
        rows = await self._run(lambda db: db.execute(sql).fetchall())
        return [_client(row) for row in rows]

    async def list_clients_for_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """The active clients ``node_id`` owns."""
        sql = (
            f"SELECT client_id, node_id, connected_at, metadata FROM {self._table}"
            " WHERE node_id = ? AND state = 'active'"
        )
        rows = await self._run(lambda db: db.execute(sql, (node_id,)).fetchall())
        return [_client(row) for row in rows]

    async def cleanup_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """Remove every client ``node_id`` owns; return the active ones."""

        def cleanup(db: sqlite3.Connection) -> list[_Row]:
            rows: list[_Row] = db.execute(
                f"SELECT client_id, node_id, connected_at, metadata FROM {self._table}"
                " WHERE node_id = ? AND state = 'active'",
                (node_id,),
            ).fetchall()
            db.execute(f"DELETE FROM {self._table} WHERE node_id = ?", (node_id,))
            return rows

        return [_client(row) for row in await self._run(cleanup)]

    async def aclose(self) -> None:
        """Close the database connection."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(
        self,
        db: sqlite3.Connection,
        client_id: str,
        node_id: int,
        text: str | None,
        allow_supersede: bool,
        state: str,
    ) -> int | None:
        row = db.execute(
            f"SELECT node_id FROM {self._table} WHERE client_id = ?", (client_id,)
        ).fetchone()
        previous: int | None = row[0] if row else None
        if previous is not None and previous != node_id and not allow_supersede:
            raise ClientConflictError(client_id, previous)
        db.execute(
            f"INSERT OR REPLACE INTO {self._table}"
            " (client_id, node_id, connected_at, state, metadata) VALUES (?, ?, ?, ?, ?)",
            (client_id, node_id, now_ms(), state, text),
        )
        return previous if previous is not None and previous != node_id else None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._transaction, work)

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result


def _client(row: _Row | Any) -> RegisteredClient[Any]:
    client_id, node_id, connected_at, metadata = row
    return RegisteredClient(client_id, node_id, connected_at, decode_metadata(metadata))
