"""Calls from the mesh to this node's SRPC clients, and from this node to any client.

A call by client id goes straight to the stream when the client is here (no registry
round trip, no JSON), otherwise through :class:`MeshClientService` as a ``forward``
(WIRE.md §3) carrying the request in the ts-proto object shape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import betterproto2

from ._tsproto_json import message_from_object, message_to_object
from .errors import (
    ClientDisconnectedError,
    ClientInvocationError,
    ClientNotFoundError,
    SrpcError,
)
from .moves import DrainMoves
from .observer import CallPlace, MeshObserver, outcome_of
from .srpc.protocol import CLOSE_CODES
from .srpc.stream import SrpcStream

if TYPE_CHECKING:
    from .client_service import MeshClientService
    from .srpc.server import SrpcServer

__all__ = ["MeshCalls", "MessageJson"]

logger = logging.getLogger("meshsrpc.mesh_server")

#: invoke_stream(stream, prefix, request, timeout): SrpcServer's call of one stream.
InvokeStream = Callable[[SrpcStream, str, betterproto2.Message, float | None], Awaitable[Any]]


class MessageJson(dict[str, Any]):
    """A message's JSON (the ts-proto object shape, WIRE.md §3) that still carries the message.

    MeshClientService hands ``data`` to a local client unchanged and JSON-encodes it
    only for another node, so the local path skips the decode/encode round trip.
    """

    __slots__ = ("message",)

    def __init__(self, message: betterproto2.Message) -> None:
        super().__init__(message_to_object(message))
        self.message = message


class MeshCalls:
    """Routes calls to clients by id, serves forwarded calls, probes and kicks (for one
    server)."""

    def __init__(
        self,
        server: SrpcServer[Any, Any],
        invoke_stream: InvokeStream,
        is_running: Callable[[], bool],
        *,
        request_timeout: float,
        moves: DrainMoves,
        metrics: MeshObserver | None = None,
    ) -> None:
        self._server = server
        self._invoke_stream = invoke_stream
        self._is_running = is_running
        self._request_timeout = request_timeout
        self._moves = moves
        self._metrics = metrics
        self._service: MeshClientService[Any] | None = None

    def bind(self, service: MeshClientService[Any]) -> None:
        """The service that routes calls for this node (made after us: it calls
        :meth:`serve_forward` directly, no hop in between)."""
        self._service = service
        service.on_client_superseded(self.kick_superseded)
        service.set_kick_handler(self.kick_by_operator)

    def _require_service(self) -> MeshClientService[Any]:
        if self._service is None:
            raise RuntimeError("MeshCalls.bind() was not called")
        return self._service

    async def invoke(
        self,
        target: SrpcStream | str,
        prefix: str,
        request: betterproto2.Message,
        timeout: float | None,
    ) -> Any:
        """Call a client on ``target`` (a stream here, or a client id anywhere).

        ``timeout`` None means ``request_timeout`` on every path.
        """
        metrics = self._metrics
        if metrics is None:
            return await self._invoke(target, prefix, request, timeout)
        here = isinstance(target, SrpcStream) or target in self._server.streams_by_client_id
        place: CallPlace = "local" if here else "remote"
        started = time.perf_counter()
        try:
            result = await self._invoke(target, prefix, request, timeout)
        except Exception as exc:
            metrics.client_called(prefix, place, outcome_of(exc), time.perf_counter() - started)
            raise
        metrics.client_called(prefix, place, "ok", time.perf_counter() - started)
        return result

    async def _invoke(
        self,
        target: SrpcStream | str,
        prefix: str,
        request: betterproto2.Message,
        timeout: float | None,
    ) -> Any:
        server = self._server
        if timeout is None:  # one default, wherever the client is (API: request_timeout)
            timeout = self._request_timeout
        if isinstance(target, SrpcStream):
            return await self._invoke_stream(target, prefix, request, timeout)
        request_call = server.server_schema.lookup(prefix, request=True)
        response_call = server.client_schema.lookup(prefix, request=False)
        if request_call is None or response_call is None:
            raise ValueError(f"unknown call prefix {prefix!r}")
        if not isinstance(request, request_call.message_cls):
            raise TypeError(
                f"{prefix} expects {request_call.message_cls.__name__}, "
                f"got {type(request).__name__}"
            )
        local = server.streams_by_client_id.get(target)
        service = self._require_service()
        if not service.is_running:
            here = " (it is connected to this server)" if local is not None else ""
            raise ClientNotFoundError(
                target,
                f"cannot reach client {target!r}{here}: the mesh is not running on this"
                " server; call mesh_start() first",
            )
        if local is not None and local.is_activated and local.is_open and self._is_running():
            # The client is here: no registry round trip, no JSON. (A takeover whose
            # kick is still on its way may route one last call to this stream.) A stream
            # already closing (superseded elsewhere, still listed until its cleanup) is
            # not: the registry says where the client is now.
            return await self._call_here(target, request_call.prefix, request, timeout)
        result = await service.invoke(target, request_call.prefix, MessageJson(request), timeout)
        if isinstance(result, MessageJson):
            return result.message
        if not isinstance(result, dict):
            raise ClientInvocationError(f"{prefix}: the client's node sent no response message")
        return message_from_object(response_call.message_cls, result)

    async def serve_forward(
        self, client_id: str, prefix: str, data: Any, timeout: float | None
    ) -> MessageJson:
        """MeshClientService's ``client_invoke_fn``: call a client whose stream is here."""
        if isinstance(data, MessageJson):
            request = data.message
        else:
            call = self._server.server_schema.lookup(prefix, request=True)
            if call is None:
                raise ValueError(f"unknown call prefix {prefix!r}")
            request = message_from_object(call.message_cls, data)
        return MessageJson(await self._call_here(client_id, prefix, request, timeout))

    async def _call_here(
        self, client_id: str, prefix: str, request: betterproto2.Message, timeout: float | None
    ) -> Any:
        stream = self._server.streams_by_client_id.get(client_id)
        if stream is None or not stream.is_activated or not stream.is_open:
            raise ClientDisconnectedError(client_id)
        try:
            return await self._invoke_stream(stream, prefix, request, timeout)
        except SrpcError as exc:
            if not stream.is_open:
                raise ClientDisconnectedError(client_id) from exc
            raise

    async def kick_superseded(self, client_id: str) -> bool:
        """The client registered on another node: close our stream of it with 4002."""
        self._moves.arrived(client_id)  # a client this draining node sent away arrived there
        server, service = self._server, self._require_service()
        stream = server.streams_by_client_id.get(client_id)
        if stream is None:
            return False
        # A kick can be overtaken: the client came back here, superseding that node in
        # turn, before its kick arrived. Then the registry names us; keep the stream.
        try:
            owner = await service.client_registry.get_client(client_id)
        except Exception:
            owner = None  # cannot tell: do as the other node asked
        if owner is not None and owner.node_id == service.instance_id:
            logger.info("ignoring a stale kick of client %r", client_id)
            return False
        if server.streams_by_client_id.get(client_id) is not stream:
            return False
        logger.info("client %r moved to another node; closing its stream here", client_id)
        await server.close_stream(
            stream, CLOSE_CODES["supersede"], "supersede", "Superseded by a connection elsewhere"
        )
        return True

    def holds_client(self, client_id: str) -> bool:
        """Answer another node's probe: is a live connection of the client here?"""
        stream = self._server.streams_by_client_id.get(client_id)
        return stream is not None and stream.is_open

    async def kick_by_operator(self, client_id: str) -> bool:
        """An operator asked (``meshsrpc kick``): close the client's stream here with 1000."""
        stream = self._server.streams_by_client_id.get(client_id)
        if stream is None or not stream.is_open:
            return False
        await self._server.close_stream(stream, CLOSE_CODES["disconnect"], "disconnect", "Kicked")
        return True
