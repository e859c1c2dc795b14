"""The lifecycle of this node's clients as a state machine: one table, no I/O.

``MeshSrpcServer`` drives it and does the I/O (Redis, callbacks, closing streams). Per
client it keeps one :class:`ClientEntry`: the client's latest metadata, the stream its
registry entry stands for (the *holder*), its *presence* (reported connected by
``on_client_connected``, not yet reported gone) and, per stream, a :class:`Phase`.
Phases only move along :data:`TRANSITIONS`; anything else is a bug and raises
:class:`IllegalTransitionError`, the way ``h11`` checks its state machine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from .errors import IllegalTransitionError

__all__ = [
    "TRANSITIONS",
    "ClientEntry",
    "ClientTable",
    "Phase",
    "Presence",
    "StreamEntry",
    "StreamRef",
]


class Phase(enum.IntEnum):
    """Where one stream of a client is, as the mesh sees it (ordered: ``phase >= ACTIVATING``)."""

    #: Accepted; its metadata snapshot taken. With the mesh running, its reservation
    #: (or the decision to take the client over at activation) is being written.
    CONNECTED = 0
    #: Reserved in the registry: hidden, not yet invocable.
    RESERVED = 1
    #: Connection handlers done, activation snapshot taken: metadata changes now go to
    #: the registry themselves.
    ACTIVATING = 2
    #: Activation (or takeover) written: invocable through the mesh.
    REGISTERED = 3
    #: ``on_client_connected`` reported for this stream.
    ANNOUNCED = 4
    #: The stream closed; its release (unregister, ``on_client_disconnected``) follows.
    CLOSED = 5


#: The legal moves. ACTIVATING → ANNOUNCED: no mesh is running, nothing is written
#: (``mesh_start`` registers the stream later). Any phase may close.
TRANSITIONS: Final[dict[Phase, frozenset[Phase]]] = {
    Phase.CONNECTED: frozenset({Phase.RESERVED, Phase.ACTIVATING, Phase.CLOSED}),
    Phase.RESERVED: frozenset({Phase.ACTIVATING, Phase.CLOSED}),
    Phase.ACTIVATING: frozenset({Phase.REGISTERED, Phase.ANNOUNCED, Phase.CLOSED}),
    Phase.REGISTERED: frozenset({Phase.ANNOUNCED, Phase.CLOSED}),
    Phase.ANNOUNCED: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


class StreamRef(Protocol):
    """What the table needs of a stream: its server id and its client's id."""

    @property
    def id(self) -> str: ...

    @property
    def client_id(self) -> str: ...


@dataclass(slots=True)
class Presence:
    """The connection ``on_client_connected`` last reported for a client, with its metadata."""

    stream_id: str
    metadata: Any


@dataclass(slots=True)
class StreamEntry:
    """One stream of a client: its phase and the work pending for it."""

    stream_id: str
    phase: Phase = Phase.CONNECTED
    #: Another node holds the client: take it over when this stream activates.
    takeover: bool = False
    #: A ``stream.meta`` sync is queued for the next turn of the loop.
    sync_scheduled: bool = False

    @property
    def is_gated(self) -> bool:
        """Past the activation snapshot and still open."""
        return Phase.ACTIVATING <= self.phase < Phase.CLOSED


@dataclass(slots=True)
class ClientEntry:
    """Everything this node knows about one client."""

    client_id: str
    #: What the registry holds (or is about to) for the client.
    metadata: Any
    #: The id of the stream this node's registry entry stands for: only its release may
    #: remove the entry. (The registry knows nodes, not streams.)
    holder: str | None = None
    presence: Presence | None = None
    streams: dict[str, StreamEntry] = field(default_factory=dict)

    @property
    def is_unused(self) -> bool:
        """No stream, no registry entry to remove, no presence to report: forgettable."""
        return not self.streams and self.holder is None and self.presence is None


class ClientTable:
    """Every client of this node; the only place their entries are made and forgotten."""

    __slots__ = ("_clients",)

    def __init__(self) -> None:
        self._clients: dict[str, ClientEntry] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def is_empty(self) -> bool:
        """True when nothing about any client is left behind."""
        return not self._clients

    def client(self, client_id: str) -> ClientEntry | None:
        """The client's entry, if this node knows it."""
        return self._clients.get(client_id)

    def stream(self, stream: StreamRef) -> StreamEntry | None:
        """The stream's entry, from :meth:`connect` until :meth:`forget`."""
        entry = self._clients.get(stream.client_id)
        return None if entry is None else entry.streams.get(stream.id)

    # --- making and forgetting entries ---------------------------------------------------

    def connect(self, stream: StreamRef, metadata: Any) -> StreamEntry:
        """A stream was accepted with ``metadata``: it is the client's latest."""
        entry = self._clients.get(stream.client_id)
        if entry is None:
            entry = self._clients[stream.client_id] = ClientEntry(stream.client_id, metadata)
        if stream.id in entry.streams:
            raise IllegalTransitionError(f"stream {stream.id} is already connected")
        entry.metadata = metadata
        state = entry.streams[stream.id] = StreamEntry(stream.id)
        return state

    def forget(self, stream: StreamRef) -> None:
        """The stream's release is done: drop it, and its client once nothing is left."""
        entry = self._clients.get(stream.client_id)
        if entry is None:
            return
        state = entry.streams.pop(stream.id, None)
        if state is not None and state.phase is not Phase.CLOSED:
            raise IllegalTransitionError(f"stream {stream.id} forgotten before it closed")
        if entry.holder == stream.id:
            raise IllegalTransitionError(f"stream {stream.id} forgotten while holding its client")
        if entry.is_unused:
            del self._clients[stream.client_id]

    # --- phases ------------------------------------------------------------------------

    def advance(self, stream: StreamRef, phase: Phase) -> None:
        """Move the stream to ``phase``; an illegal move raises IllegalTransitionError."""
        state = self._require(stream)
        if phase not in TRANSITIONS[state.phase]:
            raise IllegalTransitionError(
                f"stream {stream.id} of {stream.client_id}: {state.phase.name} -> {phase.name}"
            )
        state.phase = phase

    def progress(self, stream: StreamRef, phase: Phase) -> bool:
        """:meth:`advance`, unless the stream closed (or left the table) meanwhile: closing
        wins every race with a write in flight. Returns whether it moved."""
        state = self.stream(stream)
        if state is None or state.phase is Phase.CLOSED:
            return False
        self.advance(stream, phase)
        return True

    def phase(self, stream: StreamRef) -> Phase | None:
        """The stream's phase, None if it is not in the table."""
        state = self.stream(stream)
        return None if state is None else state.phase

    def is_gated(self, stream: StreamRef) -> bool:
        """True once the stream took its activation snapshot, until it closed."""
        state = self.stream(stream)
        return state is not None and state.is_gated

    def close(self, stream: StreamRef) -> None:
        """The stream closed (any phase); a stream never connected here is ignored."""
        state = self.stream(stream)
        if state is None or state.phase is Phase.CLOSED:
            return
        self.advance(stream, Phase.CLOSED)
        state.takeover = False

    # --- metadata ----------------------------------------------------------------------

    def remember(self, stream: StreamRef, metadata: Any) -> None:
        """``metadata`` is the client's latest (and its presence's, if ``stream`` is present)."""
        entry = self._require_client(stream.client_id)
        entry.metadata = metadata
        presence = entry.presence
        if presence is not None and presence.stream_id == stream.id:
            presence.metadata = metadata

    # --- the registry entry ------------------------------------------------------------

    def take_hold(self, stream: StreamRef) -> str | None:
        """Make ``stream`` the holder before writing its entry; returns the previous holder.

        Before, not after: a write whose reply is lost may still have happened, and then
        this stream's release must remove it.
        """
        entry = self._require_client(stream.client_id)
        previous, entry.holder = entry.holder, stream.id
        return previous

    def give_up_hold(self, stream: StreamRef, previous: str | None) -> None:
        """The write was refused (nothing written): the previous holder, if any, stays."""
        entry = self._clients.get(stream.client_id)
        if entry is not None and entry.holder == stream.id:
            entry.holder = previous

    def holds(self, stream: StreamRef) -> bool:
        """True if ``stream`` is the one this node's registry entry of its client stands for."""
        entry = self._clients.get(stream.client_id)
        return entry is not None and entry.holder == stream.id

    def has_holder(self, client_id: str) -> bool:
        """True if some stream of the client holds its registry entry."""
        entry = self._clients.get(client_id)
        return entry is not None and entry.holder is not None

    def release_hold(self, stream: StreamRef) -> Presence | None:
        """The holder is being released: it holds nothing any more; returns (and ends) the
        client's presence, which may be an older stream's that it took over from here."""
        entry = self._require_client(stream.client_id)
        if entry.holder != stream.id:
            raise IllegalTransitionError(f"stream {stream.id} does not hold {stream.client_id}")
        entry.holder = None
        presence, entry.presence = entry.presence, None
        return presence

    # --- presence ----------------------------------------------------------------------

    def announce(self, stream: StreamRef) -> Presence:
        """``on_client_connected`` is reported for ``stream``: it replaces any older presence."""
        entry = self._require_client(stream.client_id)
        state = self._require(stream)
        if state.phase is not Phase.ANNOUNCED:
            self.advance(stream, Phase.ANNOUNCED)
        presence = entry.presence = Presence(stream.id, entry.metadata)
        return presence

    def is_announced(self, stream: StreamRef) -> bool:
        """True once ``stream`` was reported connected, until its client is reported gone."""
        entry = self._clients.get(stream.client_id)
        return (
            entry is not None
            and entry.presence is not None
            and entry.presence.stream_id == stream.id
        )

    def end_presence(self, client_id: str) -> Presence | None:
        """The client is reported gone though no stream holds its entry; returns the presence."""
        entry = self._clients.get(client_id)
        if entry is None or entry.holder is not None:
            return None
        presence, entry.presence = entry.presence, None
        return presence

    # --- helpers -----------------------------------------------------------------------

    def _require_client(self, client_id: str) -> ClientEntry:
        entry = self._clients.get(client_id)
        if entry is None:
            raise IllegalTransitionError(f"client {client_id} is not in the table")
        return entry

    def _require(self, stream: StreamRef) -> StreamEntry:
        state = self.stream(stream)
        if state is None:
            raise IllegalTransitionError(
                f"stream {stream.id} of {stream.client_id} is not in the table"
            )
        return state
