"""What the parts of one mesh node share: its key and id, whether it runs, its engine and link.

:class:`~meshsrpc.mesh.MeshService` composes the parts (:mod:`meshsrpc.mesh_requests`,
:mod:`meshsrpc.mesh_heartbeats`, :mod:`meshsrpc.mesh_broadcasts`) around one
:class:`NodeState`, which it alone changes (on start and stop); the parts only read it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .direct import NodeLink
from .engine import MeshEngine
from .errors import MeshNotRunningError
from .observer import MeshObserver

__all__ = ["NodeState"]


class NodeState:
    """One mesh node as its parts see it."""

    __slots__ = ("engine", "instance_id", "key", "link", "observer", "running", "tasks")

    def __init__(self, key: str) -> None:
        self.key = key
        #: The node's id in the mesh; 0 before start and after stop.
        self.instance_id = 0
        #: True between a successful start and stop: messages are handled only then.
        self.running = False
        self.engine: MeshEngine | None = None
        #: The direct data plane while running with it on, else None.
        self.link: NodeLink | None = None
        #: Receives this node's mesh events (metrics); None = nobody, and no cost.
        self.observer: MeshObserver | None = None
        #: Background work that stop cancels (broadcast handlers, beats, callbacks).
        self.tasks: set[asyncio.Task[Any]] = set()

    def running_engine(self) -> MeshEngine:
        """The engine; :class:`MeshNotRunningError` when the node is not running."""
        engine = self.engine
        if not self.running or engine is None:
            raise MeshNotRunningError(f"MeshService {self.key!r} is not running")
        return engine
