"""Request/response between mesh nodes: invoke, serve, request heartbeats and deadlines.

A caller publishes a request to the target's inbox (or writes it to a direct channel)
and waits for the reply; its timeout restarts on every request heartbeat the serving
node sends while its handler runs (every 0.75 x the caller's timeout, as the
TypeScript nodes do). Timeouts and beats are deadlines (:class:`Deadlines`), not a
timer or a task each. The messages are those of WIRE.md §1 (:mod:`mesh_messages`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import math
import types
import uuid
from collections.abc import Callable
from typing import Any

from . import mesh_messages as messages
from ._deadlines import Deadlines
from ._tasks import call_sync_or_async, raise_if_cancelling
from .direct import Channel
from .engine import MeshEngine
from .errors import (
    MeshConnectionLostError,
    MeshError,
    MeshNoHandlerError,
    MeshNotRunningError,
    MeshRequestTimeoutError,
    MeshStoppedError,
)
from .mesh_node import NodeState

__all__ = ["MeshHandler", "MeshRequests"]

logger = logging.getLogger("meshsrpc.mesh")

#: A request handler: handler(data) -> JSON-able result, sync or async.
MeshHandler = Callable[[Any], Any]

# Heartbeats are sent every 0.75 x the caller's timeout, as the TypeScript nodes do.
_REQUEST_HEARTBEAT_RATIO = 0.75


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _PendingRequest:
    """A remote invoke waiting for its reply; its timeout restarts on each request heartbeat."""

    __slots__ = (
        "_timeouts",
        "future",
        "instance_id",
        "loop",
        "payload",
        "target_missing",
        "target_seen",
        "timeout",
        "type",
        "via",
        "via_batch",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeouts: Deadlines[_PendingRequest],
        instance_id: int,
        type: str,
        timeout: float,
    ) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.instance_id = instance_id
        self.type = type
        self.timeout = timeout
        # Whether a beat saw the target in the node list, and how many beats in a
        # row found it missing since.
        self.target_seen = False
        self.target_missing = 0
        self._timeouts = timeouts
        #: The direct connection the request was written to; None: sent through Redis.
        self.via: Channel | None = None
        self.via_batch = 0
        self.payload = b""

    def arm(self) -> None:
        """(Re)start the timeout from now."""
        if not self.future.done():
            self._timeouts.set(self, self.loop.time() + self.timeout)

    def disarm(self) -> None:
        self._timeouts.discard(self)

    def resolve(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)
        self.disarm()

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
        self.disarm()

    def expire(self) -> None:
        """The timeout passed without a reply or a request heartbeat."""
        self.fail(MeshRequestTimeoutError(self.instance_id, self.type))

    def on_sent(self, sent: asyncio.Future[None]) -> None:
        """The publish of the request ended: fail the call if it could not be sent."""
        exc = None if sent.cancelled() else sent.exception()
        if exc is not None and not self.future.done():
            error = MeshError(
                f"could not send mesh request {self.type!r} to node {self.instance_id}: {exc}"
            )
            error.__cause__ = exc
            self.fail(error)


class _Serving:
    """A request whose handler runs here: the caller gets a heartbeat every ``interval``."""

    __slots__ = ("interval", "request_id", "sender")

    def __init__(self, sender: int, request_id: str, interval: float) -> None:
        self.sender = sender
        self.request_id = request_id
        self.interval = interval


class _RequestIds:
    """Request ids in the uuid4 format: a random prefix per process and a counter.

    Unique per process like uuid4 (no late reply can match a newer request), unique
    across processes by the prefix's 74 random bits, and a fraction of uuid4's cost.
    """

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._counter = itertools.count(1)

    def next(self) -> str:
        """The next id."""
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


_request_ids = _RequestIds()


class MeshRequests:
    """One node's calls to other nodes (pending until answered) and the requests it serves."""

    def __init__(self, node: NodeState) -> None:
        self._node = node
        self.handlers: dict[str, MeshHandler] = {}
        #: Calls of this node waiting for their reply, by request id.
        self.pending: dict[str, _PendingRequest] = {}
        self._timeouts: Deadlines[_PendingRequest] = Deadlines(_PendingRequest.expire)
        self._beats: Deadlines[_Serving] = Deadlines(self._beat_request)
        #: Handlers of requests from other nodes, by id() of their request: each leaves
        #: itself when done (no done callback, one loop iteration less per request).
        self.serving: dict[int, asyncio.Task[None]] = {}

    # --- the caller's side -------------------------------------------------------------

    async def invoke(self, instance_id: int, type: str, data: Any, seconds: float) -> Any:
        """Call ``type`` on node ``instance_id`` (see :meth:`MeshService.invoke`)."""
        node = self._node
        engine = node.engine
        if not node.running or engine is None:
            # As NodeState.running_engine(), inline: one call less per invoke.
            raise MeshNotRunningError(f"MeshService {node.key!r} is not running")
        if instance_id == node.instance_id:
            handler = self.handlers.get(type)
            if handler is None:
                raise MeshNoHandlerError(type)
            return await call_sync_or_async(handler, data)
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError("timeout must be a positive finite number")
        link = node.link
        while link is not None and (congested := link.congested(instance_id)) is not None:
            # Backpressure: wait while the peer reads too slowly (bounded: a stalled
            # connection is dropped, and this call then goes through Redis).
            await congested.wait_writable()
            link, engine = node.link, node.engine
            if not node.running or engine is None:
                raise MeshStoppedError(f"MeshService {node.key!r} stopped")
        request_id = _request_ids.next()
        timeout_ms = messages.timeout_ms_to_wire(seconds)
        payload = messages.request(request_id, node.instance_id, type, data, timeout_ms)
        pending = _PendingRequest(
            asyncio.get_running_loop(), self._timeouts, instance_id, type, seconds
        )
        self.pending[request_id] = pending
        pending.arm()
        # Not awaited: the reply (or the timer, if the publish hangs) ends the wait, so
        # the caller wakes once per invoke; a failed publish fails it through on_sent.
        link = node.link
        if link is None or (via := link.send(instance_id, payload)) is None:
            engine.send_to_node(instance_id, payload).add_done_callback(pending.on_sent)
        else:
            pending.via, pending.via_batch, pending.payload = via, via.batch, payload
        if node.observer is not None:
            node.observer.mesh_message_out("request")
        try:
            return await pending.future
        finally:
            pending.disarm()
            self.pending.pop(request_id, None)

    def on_request_heartbeat(self, message: messages.RequestHeartbeat) -> None:
        """The serving node is still working on one of our calls."""
        pending = self.pending.get(message.request_id)
        if pending is None:
            logger.debug("mesh %s: heartbeat for unknown request %r", self._node.key, message)
            return
        pending.arm()

    def on_reply(self, message: messages.Reply) -> None:
        """The answer to one of our calls."""
        pending = self.pending.get(message.request_id)
        if pending is None:
            logger.debug("mesh %s: reply for unknown request %r", self._node.key, message)
        elif message.error is None:
            pending.resolve(message.data)
        else:
            pending.fail(messages.reply_error(message.error))

    def on_direct_lost(self, channel: Channel) -> None:
        """A direct connection dropped: calls written to it fail now, never resent; calls
        still queued in it (never written) go through Redis."""
        engine = self._node.engine
        for pending in list(self.pending.values()):
            if pending.via is not channel:
                continue
            pending.via = None
            if pending.via_batch > channel.flushed and engine is not None:
                sent = engine.send_to_node(pending.instance_id, pending.payload)
                sent.add_done_callback(pending.on_sent)
            else:
                pending.fail(MeshConnectionLostError(pending.instance_id, pending.type))

    def fail_sent_through_redis(self, error: MeshError) -> None:
        """Fail the calls whose reply comes through Redis (the subscription broke)."""
        for pending in list(self.pending.values()):
            if pending.via is None:  # replies to direct calls come back directly
                pending.fail(error)

    async def fail_departed(self, engine: MeshEngine) -> None:
        """Fail calls to nodes that left the mesh (e.g. crashed and were cleaned up).

        Without this, a call to a dead node waits for its whole timeout, however long.
        A target must have been listed, then be missing on two beats in a row: right
        after Redis restarted empty, live nodes are missing until their next heartbeat
        re-adds them. (A target never listed keeps the plain timeout.)
        """
        try:
            live = await engine.list_nodes()
        except Exception as exc:
            raise_if_cancelling()
            logger.debug("mesh %s: could not list nodes: %s", self._node.key, exc)
            return
        for pending in list(self.pending.values()):
            if pending.instance_id in live:
                pending.target_seen = True
                pending.target_missing = 0
                continue
            pending.target_missing += 1
            if pending.target_seen and pending.target_missing >= 2:
                pending.fail(MeshRequestTimeoutError(pending.instance_id, pending.type))

    def fail_all(self, error: MeshError) -> None:
        """The node stops: fail every call, forget every deadline."""
        for pending in list(self.pending.values()):
            pending.fail(error)
        self.pending.clear()
        self._timeouts.clear()
        self._beats.clear()

    # --- the serving side --------------------------------------------------------------

    def on_request(self, message: messages.Request, default_timeout: float) -> None:
        """Serve a request from another node in a task of its own."""
        timeout_ms = message.timeout_ms or default_timeout * 1000
        # A task of its own, started on the next turn even where eager tasks exist
        # (3.12+): started inside the channel's read callback, a burst of forwarded
        # calls cost node B more CPU each (bench/results/h8-corking).
        task = asyncio.get_running_loop().create_task(self._serve(message, timeout_ms / 1000))
        self.serving[id(message)] = task

    async def _serve(self, request: messages.Request, caller_timeout: float) -> None:
        try:
            handler = self.handlers.get(request.type)
            if handler is None:
                payload = messages.no_handler_reply(request.request_id, request.type)
            else:
                # A deadline, not a task or a timer each: most handlers answer long before
                # the first beat is due.
                interval = max(caller_timeout * _REQUEST_HEARTBEAT_RATIO, 0.01)
                serving = _Serving(request.sender, request.request_id, interval)
                self._beats.set(serving, asyncio.get_running_loop().time() + interval)
                try:
                    # As call_sync_or_async(), without its frame on every resumption.
                    result = handler(request.data)
                    # A coroutine (an async def) first: inspect.isawaitable costs more.
                    if type(result) is types.CoroutineType or inspect.isawaitable(result):
                        result = await result
                except Exception as exc:
                    raise_if_cancelling()
                    payload = messages.error_reply(request.request_id, _error_text(exc))
                else:
                    try:
                        payload = messages.reply(request.request_id, result)
                    except (TypeError, ValueError, RecursionError) as exc:
                        text = (
                            f"mesh handler {request.type!r} returned a value that is not JSON:"
                            f" {exc}"
                        )
                        payload = messages.error_reply(request.request_id, text)
                finally:
                    self._beats.discard(serving)
            # Not awaited: this task is done once the reply is queued (one wake-up less).
            self.send_to_node(request.sender, payload, "reply")
            if self._node.observer is not None:
                self._node.observer.mesh_message_out("reply")
        except Exception:
            # Nothing of a peer's request may end this task with an unretrieved error.
            raise_if_cancelling()
            logger.exception(
                "mesh %s: could not answer request %r from node %d",
                self._node.key,
                request.request_id,
                request.sender,
            )
        finally:
            self.serving.pop(id(request), None)

    def _beat_request(self, serving: _Serving) -> None:
        self._beats.set(serving, asyncio.get_running_loop().time() + serving.interval)
        # Not awaited: a slow publish must not delay the next beat.
        payload = messages.request_heartbeat(serving.request_id)
        self.send_to_node(serving.sender, payload, "request heartbeat")
        if self._node.observer is not None:
            self._node.observer.mesh_message_out("heartbeat")

    def send_to_node(self, instance_id: int, payload: bytes, what: str) -> None:
        """Queue a publish to a node; a failure is logged, nobody waits for it."""
        link = self._node.link
        if link is not None and link.send(instance_id, payload) is not None:
            return
        engine = self._node.engine
        if engine is None:
            return
        sent = engine.send_to_node(instance_id, payload)
        sent.add_done_callback(functools.partial(self._log_unsent, instance_id, what))

    def _log_unsent(self, instance_id: int, what: str, sent: asyncio.Future[None]) -> None:
        exc = None if sent.cancelled() else sent.exception()
        if exc is not None:
            logger.warning(
                "mesh %s: could not send a %s to node %d: %s",
                self._node.key,
                what,
                instance_id,
                exc,
            )
