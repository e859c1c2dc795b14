"""A worked example: the meshsrpc client registry in SQL (SQLite, stdlib only).

Implement :class:`meshsrpc.MeshClientRegistryBackend` to keep the registry in your own
database; this one passes the same backend test-suite as the shipped Redis and memory
backends (``tests/registry/``).

Usage::

    from examples.sql_registry import SqliteClientRegistry
    from meshsrpc import MeshClientService

    backend = SqliteClientRegistry("/var/lib/app/registry.db")
    service = MeshClientService("app", invoke_fn, registry_backend=backend)

How it stays correct:

- One table, ``client_id`` as primary key, so a client has exactly one owner.
- Every method is one transaction opened with ``BEGIN IMMEDIATE``: SQLite takes the
  write lock up front, so read-check-write steps (ownership checks, supersede) never
  interleave, even across processes sharing the file. A thread lock serialises this
  process's use of its single connection.
- sqlite3 blocks, so each call runs in a worker thread (``asyncio.to_thread``) and
  the event loop keeps serving.
- Metadata is stored as the JSON text of :func:`meshsrpc.registry.encode_metadata`
  (NULL = no metadata), so it round-trips exactly like the Redis backend's.
- ``state`` ``pending`` rows (reservations) are invisible to every read until
  :meth:`SqliteClientRegistry.activate`.

On PostgreSQL the same shape works with ``SELECT ... FOR UPDATE`` (or
``INSERT ... ON CONFLICT``) in place of ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from .backend import SqliteClientRegistry

__all__ = ["SqliteClientRegistry"]
