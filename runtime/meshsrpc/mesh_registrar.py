"""MeshRegistrar: drives the client table through a node's stream events and Redis.

Per stream (see :mod:`meshsrpc.lifecycle` for the phases):

- accepted → the client is *reserved* in the registry (hidden, not yet invocable),
  unless another node holds it: then protocol v1, or v2 with ``_supersede=1``, waits
  to take it over at activation; plain v2 first asks the owner whether it still holds
  a live connection (the probe): if not, or no answer, it takes over too, otherwise it
  is refused with 4001.
- connection handlers done → the reservation is *activated*, or the takeover written
  (the other node is told to close its stream with 4002): now invocable through the
  mesh. A takeover that fails before this point leaves the client on its node.
- active → ``on_client_connected`` runs, mesh or no mesh (``mesh_start`` registers
  a stream that activated before it); the client's requests wait until it has
  finished.
- closed → if this stream holds the client's entry, the client is unregistered
  (ownership-safe: a no-op when it has already moved), and ``on_client_disconnected``
  runs only if this node still owned it, i.e. the client really left. While the node
  drains, a stream closed with ``"restart"`` first waits (bounded) for its client to
  reappear on another node: then it moved, as for a supersede.

Registry writes for one client run strictly in order (a per-client queue); the
connected/disconnected callbacks run in a second per-client queue, so a slow callback
never holds up a reconnect's registry writes. Backfill (mesh start), restore (Redis
lost our entries) and reconcile (an entry went missing) write entries again through
one path, :meth:`MeshRegistrar._write_again`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._serial import KeyedSerialQueue
from ._tasks import cancel_and_wait, raise_if_cancelling
from .client_callbacks import ClientCallbacks
from .departures import UnsureDeparture, UnsureDepartures
from .errors import ClientConflictError, SrpcConflictError
from .lifecycle import ClientTable, Phase
from .meta_writes import MetaWrites
from .moves import DrainMoves
from .observer import MeshObserver
from .srpc.protocol import CLOSE_CODES, CloseCause
from .srpc.stream import SrpcStream

if TYPE_CHECKING:
    from .client_service import MeshClientService
    from .srpc.server import SrpcServer

__all__ = ["MeshRegistrar"]

logger = logging.getLogger("meshsrpc.mesh_server")

MetaT = TypeVar("MetaT")

# Re-registering a client after Redis lost it: attempts before giving up.
_RESTORE_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class _Rewrite:
    """How :meth:`MeshRegistrar._write_again` writes an entry again."""

    #: Mesh start: the stream takes hold now, may supersede as its protocol allows, and
    #: is refused (4001) if another node holds the client. Otherwise (restore) only the
    #: holder is written, never superseding: a node that registered the client while
    #: our entry was gone holds the newer connection, and our stream closes (4002).
    backfill: bool
    attempts: int
    failure: str


_BACKFILL = _Rewrite(True, 1, "could not register client %r at mesh start")
# Right after a Redis restart, pooled connections to the old server fail once.
_RESTORE = _Rewrite(False, _RESTORE_ATTEMPTS, "could not re-register client %r")


def _allows_supersede(stream: SrpcStream) -> bool:
    """Protocol v1 always takes over; v2 only with ``_supersede=1``."""
    return stream.protocol_version < 2 or stream.supersede


class MeshRegistrar(Generic[MetaT]):
    """The lifecycle of one node's clients: the table, the registry writes, the callbacks."""

    def __init__(
        self,
        server: SrpcServer[Any, Any],
        service: MeshClientService[MetaT],
        *,
        extract_metadata: Callable[[SrpcStream], MetaT] | None,
        request_timeout: float,
        moves: DrainMoves,
        metrics: MeshObserver | None = None,
    ) -> None:
        self._server = server
        self._service = service
        self.table = ClientTable()
        self._registry_steps = KeyedSerialQueue()
        self.meta_writes = MetaWrites(
            server,
            service,
            self.table,
            self._registry_steps,
            extract_metadata=extract_metadata,
            is_current=self.is_current,
            is_running=lambda: self.running,
        )
        self.meta = self.meta_writes.sync
        mesh = service.mesh
        self.departures = UnsureDepartures(
            lambda: asyncio.get_running_loop().time(),
            node_ttl=mesh.node_ttl,
            heartbeat_interval=mesh.heartbeat_interval,
        )
        self.callbacks = ClientCallbacks(self.table, self.is_current)
        # Our own flag, flipped in the same turn as the backfill is queued, so every
        # registry step of a stream is queued behind its backfill.
        self.running = False
        self._request_timeout = request_timeout
        self._reconciler: asyncio.Task[None] | None = None
        self._moves = moves
        self._metrics = metrics

    def is_current(self, stream: SrpcStream) -> bool:
        """True while ``stream`` is open and the newest stream of its client here."""
        return stream.is_open and self._server.streams_by_client_id.get(stream.client_id) is stream

    # --- the mesh starting and stopping --------------------------------------------------

    async def start(self) -> None:
        """Register every stream that connected before (active or pending); reconcile."""
        self.running = True
        backfill: list[asyncio.Task[None]] = []
        for stream in list(self._server.streams_by_id.values()):
            if not self.is_current(stream) or self.table.stream(stream) is None:
                continue
            self.meta.watch(stream)
            metadata = self.meta.take_snapshot(stream)
            active = self.table.is_gated(stream)
            step = functools.partial(self._write_again, stream, _BACKFILL, active, metadata)
            backfill.append(self._registry_steps.submit(stream.client_id, step))
        if backfill:
            await asyncio.wait(backfill)
        self._reconciler = asyncio.create_task(self._reconcile_loop())

    async def stop(self) -> None:
        """Stop writing; let a reservation still in flight land before the mesh cleans up."""
        self.running = False
        if self._reconciler is not None:
            await cancel_and_wait([self._reconciler])
            self._reconciler = None
        await self._registry_steps.drain(self._request_timeout)

    async def drain(self, callback_timeout: float, *, grace: float = 0.0) -> None:
        """Finish (bounded) the registry steps and callbacks of the streams closed so far;
        ``grace`` more for releases waiting for their client to move (a drain)."""
        await self._registry_steps.drain(grace + self._request_timeout)
        await self.callbacks.drain(callback_timeout)

    # --- stream events (SrpcServer hooks) ----------------------------------------------

    async def established(self, stream: SrpcStream) -> None:
        """The WebSocket was accepted: reserve the client (or plan its takeover)."""
        metadata = self.meta.extract(stream)
        self.table.connect(stream, metadata)
        self.meta.watch(stream)
        if not self.running:
            return
        step = functools.partial(self._reserve, stream, metadata)
        await asyncio.shield(self._registry_steps.submit(stream.client_id, step))

    async def activating(self, stream: SrpcStream) -> bool:
        """The connection handlers are done: write the activation; False if it was lost."""
        metadata = self.meta.take_snapshot(stream)
        self.table.advance(stream, Phase.ACTIVATING)
        if not self.running:
            return True
        step = functools.partial(self._activate, stream, metadata)
        if not await asyncio.shield(self._registry_steps.submit(stream.client_id, step)):
            return False
        self.table.progress(stream, Phase.REGISTERED)
        return True

    async def activated(self, stream: SrpcStream) -> None:
        """The stream is active: report the client connected, mesh or no mesh (as the
        TypeScript server does); its requests wait for it."""
        await asyncio.shield(self.callbacks.announce(stream))

    def closed(self, stream: SrpcStream, cause: CloseCause) -> None:
        """The stream closed: queue its release (not awaited: disconnect handlers need not
        wait for Redis)."""
        self.table.close(stream)
        self.meta.unwatch(stream)
        step = functools.partial(self._release, stream, cause)
        self._registry_steps.submit(stream.client_id, step)

    # --- registry steps (each runs in its client's registry queue) -----------------------

    async def _reserve(self, stream: SrpcStream, metadata: MetaT) -> None:
        if not self.is_current(stream):
            return
        previous = self.table.take_hold(stream)
        try:
            # Never supersede here: another node's entry stays until activation.
            await self._service.reserve_client(stream.client_id, metadata, allow_supersede=False)
        except ClientConflictError as exc:
            self.table.give_up_hold(stream, previous)
            state = self.table.stream(stream)
            if _allows_supersede(stream):
                if state is not None:
                    state.takeover = True
                return
            if self._metrics is not None:
                self._metrics.client_conflict()
            # The owner may be dead (not cleaned up yet) or hold a ghost: if it says it
            # has no live connection, or does not answer, take the client over (at
            # activation, as a supersede) instead of refusing it until node_ttl.
            held = await self._service.owner_holds(stream.client_id, exc.owner_node_id)
            state = self.table.stream(stream)
            if not held and self.is_current(stream) and state is not None:
                state.takeover = True
                return
            logger.info(
                "refusing %r: connected to node %d (protocol v2)",
                stream.client_id,
                exc.owner_node_id,
            )
            raise SrpcConflictError("Client ID already connected on another node") from exc
        self.table.progress(stream, Phase.RESERVED)

    async def _activate(self, stream: SrpcStream, metadata: MetaT) -> bool:
        state = self.table.stream(stream)
        if not self.is_current(stream) or state is None:
            return False
        if state.takeover:
            state.takeover = False
            self.table.take_hold(stream)
            # Supersedes the other node, which is told to close its stream.
            return await self._service.register_client(
                stream.client_id, metadata, allow_supersede=True
            )
        try:
            return await self._service.activate_client(stream.client_id, metadata)
        except ClientConflictError:
            return False

    async def _write_again(
        self, stream: SrpcStream, how: _Rewrite, active: bool, metadata: Any = None
    ) -> None:
        """Write a client's entry again: at mesh start, or after the registry lost it."""
        table = self.table
        client_id = stream.client_id
        previous: str | None = None
        if how.backfill:
            if not self.is_current(stream):
                return
            previous = table.take_hold(stream)
            allow_supersede = _allows_supersede(stream)
        else:
            # A stream that closed since this step was queued is registered all the same:
            # its release is queued behind this step and then finds (and reports) it.
            entry = table.client(client_id)
            if entry is None or entry.holder != stream.id or not self.running:
                return  # not reserved yet (its reservation follows), or replaced here
            metadata, allow_supersede = entry.metadata, False
        registered = False
        for attempt in range(how.attempts):
            try:
                if active:
                    registered = await self._service.register_client(
                        client_id, metadata, allow_supersede=allow_supersede
                    )
                else:
                    await self._service.reserve_client(
                        client_id, metadata, allow_supersede=allow_supersede
                    )
                    registered = True
                break
            except ClientConflictError:
                break
            except Exception:
                if attempt + 1 == how.attempts:
                    logger.exception(how.failure, client_id)
                    return
                await asyncio.sleep(0.1 * (attempt + 1))
        if not registered:
            if how.backfill:
                table.give_up_hold(stream, previous)
                logger.info("closing %r: it is connected to another node", client_id)
                await self._server.close_stream(
                    stream, CLOSE_CODES["conflict"], "conflict", "Client ID already connected"
                )
            elif stream.is_open:
                logger.info("client %r moved to another node meanwhile; closing it here", client_id)
                await self._server.close_stream(
                    stream, CLOSE_CODES["supersede"], "supersede", "Client moved to another node"
                )
            return
        if not how.backfill:
            return
        phase = table.phase(stream)
        if not active and phase is Phase.CONNECTED:
            table.advance(stream, Phase.RESERVED)
        elif active and phase is Phase.ACTIVATING:
            table.advance(stream, Phase.REGISTERED)
        if active and self.is_current(stream):
            self.callbacks.announce(stream)

    async def _release(self, stream: SrpcStream, cause: CloseCause) -> None:
        try:
            if self.table.holds(stream):
                await self._release_holder(stream, cause)
            else:
                self._release_other(stream)
        finally:
            self.table.forget(stream)

    def _release_other(self, stream: SrpcStream) -> None:
        """A stream that held no registry entry: refused, closed before its reservation,
        taken over by a newer stream here, or active while no mesh ran."""
        client_id = stream.client_id
        if self.table.has_holder(client_id) or client_id in self._server.streams_by_client_id:
            logger.debug("released %r: the stream held no registry entry", client_id)
            return  # the holder's (or the newer stream's) release reports the client
        presence = self.table.end_presence(client_id)
        if presence is not None:
            # Reported connected while no mesh ran, never registered: it left.
            self.callbacks.report_gone(client_id, presence.metadata)

    async def _release_holder(self, stream: SrpcStream, cause: CloseCause) -> None:
        client_id = stream.client_id
        # The client's connection reported here: this stream's, or that of an older
        # stream here it took over from before being announced itself.
        presence = self.table.release_hold(stream)
        if (
            cause == "restart"
            and self.running
            and await self._moves.moved(client_id, self._service.instance_id, self._owner_of)
        ):
            # Reported connected on its new node, which took the entry over: as for a
            # supersede, nothing to remove or report here.
            cause = "supersede"
        announced = presence is not None
        metadata = presence.metadata if presence is not None else None
        unreachable = False
        try:
            removed = await self._service.unregister_client(client_id)
        except Exception as exc:
            logger.warning("could not unregister client %r: %s", client_id, exc)
            # Redis is unreachable (or restarting empty, so that a later unregister would
            # find nothing and report nothing). As far as this node knows it still owns
            # the client: a takeover would have closed the stream with "supersede". So
            # the client left; report it now, and retry the unregister below.
            removed = cause != "supersede"
            unreachable = True
        logger.debug(
            "released %r: removed=%s announced=%s cause=%s", client_id, removed, announced, cause
        )
        if not self.running and announced and cause != "supersede":
            # The node is leaving: mesh_stop() already removed its clients from the
            # registry (so that no node reports them orphaned). Closing the stream is
            # the client leaving; nobody else will ever report it.
            removed = True
        if not removed and announced and cause != "supersede":
            if self.departures.just_rejoined():
                # Redis lost its data moments ago (a step queued behind a slow one may
                # run after the rejoin): decide now.
                await self._check_departure(client_id, metadata)
            else:
                departure = self.departures.remember(client_id, metadata)
                asyncio.get_running_loop().call_later(
                    self.departures.settle_after, self._settle, departure
                )
        if removed and announced:
            self.callbacks.report_gone(client_id, metadata)
        if unreachable:
            await self._retry_unregister(client_id)

    async def _retry_unregister(self, client_id: str) -> None:
        """Remove a client whose unregister failed once Redis answers again (bounded).

        Runs in the client's registry queue, so a reconnect to this node (queued
        behind it) cannot be removed by it; another node's entry is never touched.
        """
        loop = asyncio.get_running_loop()
        delay = 0.1
        deadline = loop.time() + self._request_timeout
        while self.running and loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            try:
                await self._service.unregister_client(client_id)
                return
            except Exception:
                continue
        logger.warning("gave up unregistering client %r", client_id)

    async def _owner_of(self, client_id: str) -> int | None:
        owner = await self._service.client_registry.get_client(client_id)
        return None if owner is None else owner.node_id

    # --- entries the registry lost ---------------------------------------------------------

    async def restore(self) -> None:
        """The mesh found our entries gone (Redis restarted empty): register our streams again.

        Without this, every client connected here before the restart would be missing
        from the registry (not invocable, and takeable by a plain v2 connection).
        """
        if not self.running:
            return
        for departure in self.departures.rejoined():
            if departure.client_id not in self._server.streams_by_client_id:
                step = functools.partial(
                    self._check_departure, departure.client_id, departure.metadata
                )
                self._registry_steps.submit(departure.client_id, step)
        steps: list[asyncio.Task[None]] = []
        for stream in list(self._server.streams_by_id.values()):
            if not self.is_current(stream):
                continue
            step = functools.partial(
                self._write_again, stream, _RESTORE, self.table.is_gated(stream)
            )
            steps.append(self._registry_steps.submit(stream.client_id, step))
        if steps:
            await asyncio.wait(steps)
        logger.info("re-registered %d client(s) after the mesh rejoined", len(steps))

    async def _reconcile_loop(self) -> None:
        """Every node TTL, register again the clients held here that the registry lost.

        A node that reserved one of our clients (a move) and died before its kick
        arrived leaves our stream open and the client owned by nobody; nothing else
        would repair that.
        """
        interval = self._service.mesh.node_ttl
        while self.running:
            await asyncio.sleep(interval)
            try:
                await self._reconcile()
            except Exception as exc:
                raise_if_cancelling()
                logger.warning("could not check the registry entries of this node: %s", exc)

    async def _reconcile(self) -> None:
        # Announced streams only: their activation was written before the listing.
        held = [
            stream
            for stream in list(self._server.streams_by_id.values())
            if self.table.is_announced(stream) and self.is_current(stream)
        ]
        if not held:
            return
        listed = await self._service.client_registry.list_clients_for_node()
        registered = {client.client_id for client in listed}
        for stream in held:
            if stream.client_id in registered or not self.is_current(stream):
                continue
            logger.info("client %r is held here but unregistered; registering it", stream.client_id)
            step = functools.partial(self._write_again, stream, _RESTORE, True)
            self._registry_steps.submit(stream.client_id, step)

    def _settle(self, departure: UnsureDeparture) -> None:
        """Check a client that left unowned, unless a rejoin already dealt with it."""
        if not self.running or not self.departures.settle(departure):
            return
        step = functools.partial(self._check_departure, departure.client_id, departure.metadata)
        self._registry_steps.submit(departure.client_id, step)

    async def _check_departure(self, client_id: str, metadata: Any) -> None:
        if client_id in self._server.streams_by_client_id:
            return
        try:
            if await self._service.client_registry.get_client(client_id) is not None:
                logger.debug("unsure %r: registered elsewhere, not reported", client_id)
                return  # it is registered elsewhere now: it moved, it did not leave
        except Exception:
            logger.exception("could not look up client %r", client_id)
        logger.debug("unsure %r: held by nobody, reported as disconnected", client_id)
        self.callbacks.report_gone(client_id, metadata)

    # --- metadata ------------------------------------------------------------------------

    async def apply_client_metadata(self, client_id: str, metadata: Any) -> bool:
        """MeshClientService's ``client_update_meta_fn``: runs on the owning node."""
        return await self.meta_writes.apply(client_id, metadata)
