"""MeshObserver: the points where a node reports what it does, for metrics.

The runtime calls an observer only when one is set (``metrics=`` on the services),
and checks for None first, so a node without metrics pays one attribute read per
point. :class:`meshsrpc.metrics.PrometheusMetrics` is the ready-made implementation;
subclass this (every method is a no-op here) to feed another system.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

__all__ = ["CallOutcome", "CallPlace", "MeshMessageKind", "MeshObserver", "outcome_of"]

#: What a mesh message was: ``request``, ``reply``, ``heartbeat`` or ``broadcast``.
MeshMessageKind = Literal["request", "reply", "heartbeat", "broadcast"]
#: How a call ended: ``ok``, ``error`` (the other side answered an error), ``timeout``,
#: ``not_found`` (no such client) or ``disconnected`` (the client left meanwhile).
CallOutcome = Literal["ok", "error", "timeout", "not_found", "disconnected"]
#: Where a server→client call ran: on this node's own stream, or forwarded to another node.
CallPlace = Literal["local", "remote"]


class MeshObserver:
    """Receives a node's events; the base class ignores them all."""

    def set_connected_clients(self, count: Callable[[], int]) -> None:
        """``count()`` gives the number of clients connected to this node, when asked."""

    # --- clients ---------------------------------------------------------------------

    def client_connected(self) -> None:
        """A client became visible and invocable on this node."""

    def client_disconnected(self) -> None:
        """A client left this node (its registry entry was removed by this node)."""

    def client_moved(self) -> None:
        """A client connected here took itself over from another node."""

    def client_conflict(self) -> None:
        """A connection was refused because its client is connected on another node."""

    def orphans_reported(self, node_id: int, count: int) -> None:
        """As the leader: node ``node_id`` died with ``count`` clients still registered."""

    # --- calls -----------------------------------------------------------------------

    def rpc_served(self, call: str, outcome: CallOutcome, seconds: float) -> None:
        """A client→server request (``call`` = its prefix) was answered here."""

    def client_called(
        self, call: str, place: CallPlace, outcome: CallOutcome, seconds: float
    ) -> None:
        """A server→client call made from this node ended."""

    # --- mesh and Redis --------------------------------------------------------------

    def mesh_message_in(self, kind: MeshMessageKind) -> None:
        """A mesh message arrived (parsed and valid)."""

    def mesh_message_out(self, kind: MeshMessageKind) -> None:
        """A mesh message was queued for publishing."""

    def registry_error(self, operation: str) -> None:
        """A client registry command failed (``operation`` = register, activate, ...)."""

    def redis_reconnected(self) -> None:
        """The node's subscription to Redis was lost and is live again."""

    def leader_changed(self, is_leader: bool) -> None:
        """This node became (True) or stopped being (False) the mesh's cleanup leader."""


def outcome_of(exc: BaseException) -> CallOutcome:
    """The outcome label of a call that raised ``exc``."""
    # Imported here: errors must stay importable without this module and vice versa.
    from .errors import ClientDisconnectedError, ClientNotFoundError, MeshRequestTimeoutError

    if isinstance(exc, ClientNotFoundError):
        return "not_found"
    if isinstance(exc, ClientDisconnectedError):
        return "disconnected"
    if isinstance(exc, TimeoutError | MeshRequestTimeoutError):
        return "timeout"
    return "error"
