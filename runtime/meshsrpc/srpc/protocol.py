"""Sans-I/O SRPC: frames in, events out; request ids, reply matching, activation queueing.

Both ends use :class:`SrpcProtocol`: the server decodes ``ClientMessage`` and encodes
``ServerMessage``, the client the other way round. Nothing here touches a socket or
the event loop; the asyncio layer (``session.py``) feeds received frames in and sends
the bytes the methods return.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import betterproto2

from .frames import CallField, FrameError, FrameSchema
from .ids import uuid7

__all__ = [
    "CLOSE_CODES",
    "MAX_CLOSE_REASON_BYTES",
    "UNHANDLED_MESSAGE_TYPE",
    "ByteStreamReceived",
    "CloseCause",
    "Event",
    "PingReceived",
    "ProtocolViolation",
    "ReplyReceived",
    "RequestReceived",
    "SrpcProtocol",
    "cause_for_close_code",
    "truncate_reason",
]

CloseCause: TypeAlias = Literal[
    "disconnect", "conflict", "supersede", "timeout", "badArg", "restart"
]
"""Why a stream closed, as disconnect handlers see it."""

CLOSE_CODES: Final[dict[CloseCause, int]] = {
    "disconnect": 1000,
    "badArg": 4000,
    "conflict": 4001,
    "supersede": 4002,
    "timeout": 4003,
    # The server is draining (a rolling deploy): reconnect at once, to another node.
    # The standard "Service Restart" code, so that any client reconnects.
    "restart": 1012,
}
_CAUSES_BY_CODE: Final[dict[int, CloseCause]] = {code: cause for cause, code in CLOSE_CODES.items()}

_EXPIRED_IDS: Final = 1024

MAX_CLOSE_REASON_BYTES: Final = 123

UNHANDLED_MESSAGE_TYPE: Final = "Unhandled message type"
"""The error a peer answers to a call it has no handler for (the TypeScript text; the
prefix follows after a colon)."""
"""A WebSocket close frame carries at most 125 bytes: a 2-byte code and the reason."""


def cause_for_close_code(code: int | None) -> CloseCause:
    """Map a received close code to a cause; anything unknown reads as ``"disconnect"``."""
    return _CAUSES_BY_CODE.get(code or 1000, "disconnect")


def truncate_reason(reason: str) -> str:
    """Cut a close reason to 123 UTF-8 bytes without splitting a character."""
    encoded = reason.encode()
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return encoded[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


# --- events -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer sent ``{pingPong}``."""


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """The peer calls us; ``call`` is None when the frame holds no request member we know."""

    request_id: str
    call: CallField | None
    member: str
    value: betterproto2.Message | None
    trace: betterproto2.Message | None


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    """The peer answered one of our requests (with a response or an error)."""

    request_id: str
    expected: CallField
    member: str
    value: betterproto2.Message | None
    error: str | None
    user_error: bool


@dataclass(frozen=True, slots=True)
class ByteStreamReceived:
    """A ``byteStreamOperation`` frame (write / finish / destroy on a substream)."""

    operation: betterproto2.Message


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer broke the protocol; close the stream with 4000 (badArg) and this reason."""

    reason: str


Event: TypeAlias = (
    PingReceived | RequestReceived | ReplyReceived | ByteStreamReceived | ProtocolViolation
)


class SrpcProtocol:
    """Per-connection SRPC state without I/O.

    ``receive`` turns one WebSocket message into events. Requests that arrive before
    :meth:`activate` are held back and returned by it, in arrival order; pings, replies
    and byte-stream frames always pass straight through (a connection handler may call
    the peer before activation and must get its replies).
    """

    def __init__(
        self,
        incoming: FrameSchema[Any],
        outgoing: FrameSchema[Any],
        *,
        max_frame_size: int | None = None,
        activated: bool = False,
    ) -> None:
        self.incoming = incoming
        self.outgoing = outgoing
        self.max_frame_size = max_frame_size
        self.is_activated = activated
        self.last_ping_at: int | None = None
        """Epoch ms of the peer's last ping."""
        self.last_received_at = time.monotonic()
        """Monotonic time of the last frame received, for inactivity checks."""
        self.pings_received = 0
        self._pending: dict[str, CallField] = {}
        # Created on first use: most connections never time out a call and see no
        # request before activation, and an idle server holds thousands of these.
        self._expired: OrderedDict[str, None] | None = None
        self._queued: deque[RequestReceived] | None = None
        self.violated = False

    # --- inbound ---------------------------------------------------------------------

    @property
    def queued_requests(self) -> int:
        """Requests held back until activation."""
        return len(self._queued) if self._queued is not None else 0

    def receive(self, data: bytes | str) -> list[Event]:
        """Decode one WebSocket message; return what happened."""
        if self.violated:
            return []
        self.last_received_at = time.monotonic()
        if isinstance(data, str):
            return self._violation("Binary frames only")
        if self.max_frame_size is not None and len(data) > self.max_frame_size:
            return self._violation(f"Frame exceeds {self.max_frame_size} bytes")
        try:
            frame = self.incoming.decode(data)
        except FrameError:
            return self._violation("Invalid message format")
        # pingPong / byteStreamOperation first: the TypeScript peer sends them with
        # requestId "" or "undefined" and reply false.
        if frame.member == self.incoming.ping_attr:
            self.last_ping_at = int(time.time() * 1000)
            self.pings_received += 1
            return [PingReceived()]
        if frame.member and frame.member == self.incoming.byte_stream_attr:
            assert frame.value is not None
            return [ByteStreamReceived(frame.value)]
        if frame.reply:
            if not frame.request_id:
                return self._violation("Reply without requestId")
            expected = self._pending.pop(frame.request_id, None)
            if expected is None:
                if self._expired is not None and frame.request_id in self._expired:
                    del self._expired[frame.request_id]
                    return []  # a late reply to a call that timed out: not the peer's fault
                return self._violation(f"Reply to unknown requestId {frame.request_id}")
            return [
                ReplyReceived(
                    frame.request_id,
                    expected,
                    frame.member,
                    frame.value,
                    frame.error,
                    bool(frame.user_error),
                )
            ]
        call = self.incoming.fields_by_attr.get(frame.member) if frame.member else None
        if call is not None and not call.is_request:
            call = None
        event = RequestReceived(frame.request_id, call, frame.member, frame.value, frame.trace)
        if not self.is_activated:
            if self._queued is None:
                self._queued = deque()
            self._queued.append(event)
            return []
        return [event]

    def _violation(self, reason: str) -> list[Event]:
        self.violated = True
        return [ProtocolViolation(reason)]

    def activate(self) -> list[RequestReceived]:
        """Mark the stream active; return the requests queued so far, oldest first."""
        self.is_activated = True
        queued, self._queued = self._queued, None
        return list(queued) if queued is not None else []

    # --- outbound --------------------------------------------------------------------

    def outgoing_call(self, prefix: str) -> CallField:
        """The ``<prefix>Request`` member we send; KeyError if the schema has none."""
        call = self.outgoing.lookup(prefix, request=True)
        if call is None:
            raise KeyError(prefix)
        return call

    def request(
        self,
        call: CallField,
        value: betterproto2.Message,
        *,
        trace: betterproto2.Message | None = None,
    ) -> tuple[str, bytes]:
        """Start a call; return its new request id and the frame to send."""
        request_id = uuid7()
        frame = self.outgoing.encode(
            request_id=request_id, trace=trace, member=call.attr, value=value
        )
        self._pending[request_id] = call
        return request_id, frame

    def forget(self, request_id: str, *, expired: bool = False) -> None:
        """Stop expecting a reply.

        With ``expired`` (the caller timed out or gave up while the request was out)
        a late reply is dropped silently; the last 1024 such ids are remembered. Any
        other reply to an id we are not waiting for closes the stream with 4000.
        """
        if self._pending.pop(request_id, None) is not None and expired:
            if self._expired is None:
                self._expired = OrderedDict()
            self._expired[request_id] = None
            while len(self._expired) > _EXPIRED_IDS:
                self._expired.popitem(last=False)

    @property
    def pending_requests(self) -> list[str]:
        """Ids of our calls still waiting for a reply."""
        return list(self._pending)

    def reply(self, request_id: str, call: CallField, value: betterproto2.Message) -> bytes:
        """The frame answering ``request_id`` with the ``<prefix>Response`` member."""
        response = self.outgoing.lookup(call.prefix, request=False)
        if response is None:
            raise KeyError(call.prefix)
        return self.outgoing.encode_reply(request_id, response.attr, value)

    def error_reply(self, request_id: str, message: str, *, user_error: bool) -> bytes:
        """The frame answering ``request_id`` with an error."""
        return self.outgoing.encode(
            request_id=request_id, reply=True, error=message, user_error=user_error
        )

    def ping(self) -> bytes:
        """A ``{pingPong}`` frame."""
        return self.outgoing.ping()

    def byte_stream_frame(self, operation: betterproto2.Message) -> bytes:
        """A ``{byteStreamOperation}`` frame."""
        if self.outgoing.byte_stream_attr is None:
            raise TypeError(f"{self.outgoing.container.__name__} has no byteStreamOperation = 51")
        return self.outgoing.encode(member=self.outgoing.byte_stream_attr, value=operation)
