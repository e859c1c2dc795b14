"""Clients that left while the registry did not know them: did they leave, or move?

An unregister that finds nothing, although no takeover closed the stream, means Redis
lost its data (restarted empty; the mesh's rejoin tells) or a node that reserved the
client died before its kick arrived. Either way, once every node has had time to
register its clients again (one node TTL), a client that nobody holds really left.
No I/O here: the caller passes a clock and does the lookups and reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["UnsureDeparture", "UnsureDepartures"]


@dataclass(frozen=True, slots=True, eq=False)
class UnsureDeparture:
    """One client that left unowned: its last metadata and when (clock time)."""

    client_id: str
    metadata: Any
    left_at: float


class UnsureDepartures:
    """Departures to settle later, oldest first, forgotten once too old to matter."""

    def __init__(
        self, clock: Callable[[], float], *, node_ttl: float, heartbeat_interval: float
    ) -> None:
        self._clock = clock
        #: After this long every live node has heartbeated and re-registered its clients.
        self.settle_after = node_ttl
        # Data is lost at most a few heartbeats before the rejoin that reveals it.
        self._memory = node_ttl + 2 * heartbeat_interval
        self._pending: dict[str, UnsureDeparture] = {}
        self._rejoined_at = -float("inf")

    def __len__(self) -> int:
        return len(self._pending)

    def _horizon(self) -> float:
        return self._clock() - self._memory

    def remember(self, client_id: str, metadata: Any) -> UnsureDeparture:
        """Note a departure; settle it with :meth:`settle` after :attr:`settle_after` seconds."""
        pending = self._pending
        pending.pop(client_id, None)
        departure = pending[client_id] = UnsureDeparture(client_id, metadata, self._clock())
        # Oldest first (insertion order): ordinary moves must not pile up here.
        horizon = self._horizon()
        for old in list(pending.values()):
            if old.left_at >= horizon:
                break
            del pending[old.client_id]
        return departure

    def settle(self, departure: UnsureDeparture) -> bool:
        """True if ``departure`` is still pending (now taken): check and report it."""
        if self._pending.get(departure.client_id) is not departure:
            return False
        del self._pending[departure.client_id]
        return True

    def rejoined(self) -> list[UnsureDeparture]:
        """The mesh found the registry lost: take the recent departures to check now.

        Only recent ones count; older ones were ordinary moves to another node.
        """
        self._rejoined_at = self._clock()
        pending, self._pending = self._pending, {}
        horizon = self._horizon()
        return [departure for departure in pending.values() if departure.left_at >= horizon]

    def just_rejoined(self) -> bool:
        """True if the registry was found lost moments ago: decide departures at once."""
        return self._rejoined_at >= self._horizon()

    def clear(self) -> None:
        """Forget every pending departure."""
        self._pending.clear()
