"""Sans-I/O SRPC: frames in, events out; request ids, reply matching, activation queueing.

Both ends use :class:`SrpcProtocol`: the server decodes ``ClientMessage`` and encodes
``ServerMessage``, the client the other way round. Nothing here touches a socket, the
event loop or a clock: the asyncio layer (``session.py``) feeds received frames in with
the time they arrived, sends the bytes the methods return and asks :meth:`SrpcProtocol.close`
before it closes (the first cause wins).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import betterproto2

from .frames import CallField, FrameError, FrameSchema, proto_meta
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
    "RequestLimitExceeded",
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


# The two made for every call are not frozen: a frozen dataclass sets each field through
# object.__setattr__, four times the cost of a plain one. Nothing changes them.
@dataclass(slots=True)
class RequestReceived:
    """The peer calls us; ``call`` is None when the frame holds no request member we know."""

    request_id: str
    call: CallField | None
    member: str
    value: betterproto2.Message | None
    trace: betterproto2.Message | None


@dataclass(slots=True)
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


@dataclass(frozen=True, slots=True)
class RequestLimitExceeded:
    """More requests are running or held back than ``max_in_flight``: close with 4000."""

    limit: int

    @property
    def reason(self) -> str:
        """The close reason."""
        return f"More than {self.limit} requests in flight"


Event: TypeAlias = (
    PingReceived
    | RequestReceived
    | ReplyReceived
    | ByteStreamReceived
    | ProtocolViolation
    | RequestLimitExceeded
)


class SrpcProtocol:
    """Per-connection SRPC state without I/O.

    ``receive`` turns one WebSocket message into events. Requests that arrive before
    :meth:`activate` are held back and returned by it, in arrival order; pings, replies
    and byte-stream frames always pass straight through (a connection handler may call
    the peer before activation and must get its replies).

    The protocol also counts the requests it handed out until :meth:`request_done`
    (``max_in_flight`` bounds them with the held-back ones) and decides the close
    cause: the first :meth:`close` wins, and from then on no request is handed out.
    Times are passed in: ``now`` is a monotonic clock in seconds, ``epoch_ms`` the wall
    clock in milliseconds. Request ids come from ``new_request_id`` (uuid7 by default).
    """

    def __init__(
        self,
        incoming: FrameSchema[Any],
        outgoing: FrameSchema[Any],
        *,
        max_frame_size: int | None = None,
        activated: bool = False,
        max_in_flight: int | None = None,
        new_request_id: Callable[[], str] = uuid7,
    ) -> None:
        self.incoming = incoming
        self.outgoing = outgoing
        self.max_frame_size = max_frame_size
        self.max_in_flight = max_in_flight
        """Requests running plus held back before the stream closes with 4000 (None: no cap)."""
        self.is_activated = activated
        self.last_ping_at: int | None = None
        """Epoch ms of the peer's last ping."""
        self.last_received_at = 0.0
        """Monotonic time of the last frame received (or of :meth:`mark_alive`)."""
        self.pings_received = 0
        self.in_flight = 0
        """Requests handed out and not yet :meth:`request_done`."""
        self.close_cause: CloseCause | None = None
        """Why the stream closes; set by the first :meth:`close` (or :meth:`connection_lost`)."""
        self.refusing = False
        self._pending: dict[str, CallField] = {}
        # Created on first use: most connections never time out a call and see no
        # request before activation, and an idle server holds thousands of these.
        self._expired: OrderedDict[str, None] | None = None
        self._queued: deque[RequestReceived] | None = None
        self.violated = False
        self._new_request_id = new_request_id

    # --- inbound ---------------------------------------------------------------------

    @property
    def queued_requests(self) -> int:
        """Requests held back until activation."""
        return len(self._queued) if self._queued is not None else 0

    def mark_alive(self, now: float) -> None:
        """Count ``now`` as the peer's last sign of life (a connection that just opened)."""
        self.last_received_at = now

    def receive(self, data: bytes | str, now: float, epoch_ms: int) -> list[Event]:
        """Decode one WebSocket message received at ``now``; return what happened."""
        if self.violated:
            return []
        self.last_received_at = now
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
            self.last_ping_at = epoch_ms
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
        events: list[Event]
        if not self.is_activated:
            if self._queued is None:
                self._queued = deque()
            self._queued.append(event)
            events = []
        elif self.close_cause is not None or self.refusing:
            return []
        else:
            self.in_flight += 1
            events = [event]
        limit = self.max_in_flight
        queued = self._queued
        if (
            limit is not None
            and self.in_flight + (len(queued) if queued is not None else 0) > limit
            and self.close_cause is None
        ):
            events.append(RequestLimitExceeded(limit))
        return events

    def _violation(self, reason: str) -> list[Event]:
        self.violated = True
        return [ProtocolViolation(reason)]

    def activate(self) -> list[RequestReceived]:
        """Mark the stream active; return the requests queued so far, oldest first.

        None once the stream is closing or refusing requests: they are dropped.
        """
        self.is_activated = True
        queued, self._queued = self._queued, None
        if queued is None or self.close_cause is not None or self.refusing:
            return []
        self.in_flight += len(queued)
        return list(queued)

    def request_done(self) -> None:
        """One request handed out by :meth:`receive` or :meth:`activate` has ended."""
        self.in_flight -= 1

    def refuse_requests(self) -> None:
        """Hand out no request from now on (a draining server closes with 1012 next)."""
        self.refusing = True

    # --- closing ---------------------------------------------------------------------

    @property
    def is_closing(self) -> bool:
        """True once a close cause is decided."""
        return self.close_cause is not None

    def close(
        self, cause: CloseCause, reason: str = "", *, code: int | None = None
    ) -> tuple[int, str] | None:
        """Decide to close for ``cause``; the close code and reason to send.

        None when a cause was decided before: the first one wins.
        """
        if self.close_cause is not None:
            return None
        self.close_cause = cause
        return (code if code is not None else CLOSE_CODES[cause], truncate_reason(reason))

    def connection_lost(self, close_code: int | None) -> CloseCause:
        """The connection ended (with the peer's close code, if any); the final cause."""
        if self.close_cause is None:
            self.close_cause = cause_for_close_code(close_code)
        return self.close_cause

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
        request_id = self._new_request_id()
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

    def byte_stream_operation(
        self, stream_id: int, kind: str, *, chunk: bytes | None = None, error: str | None = None
    ) -> bytes:
        """A ``{byteStreamOperation}`` frame: ``kind`` is write, finish or destroy."""
        op_cls = self.outgoing.byte_stream_cls
        if op_cls is None:
            raise TypeError("this schema has no byteStreamOperation field")
        fields: dict[str, Any] = {"chunk": chunk} if kind == "write" else {}
        if error is not None:
            fields["error"] = error
        inner = proto_meta(op_cls).cls_by_field[kind](**fields)
        op_factory: Any = op_cls
        return self.byte_stream_frame(op_factory(stream_id=stream_id, **{kind: inner}))

    def byte_stream_frame(self, operation: betterproto2.Message) -> bytes:
        """A ``{byteStreamOperation}`` frame."""
        if self.outgoing.byte_stream_attr is None:
            raise TypeError(f"{self.outgoing.container.__name__} has no byteStreamOperation = 51")
        return self.outgoing.encode(member=self.outgoing.byte_stream_attr, value=operation)
