"""The JSON messages of the mesh (WIRE.md §1): written byte for byte as the TypeScript
nodes write them, and checked on arrival so that a bad message is dropped, never fatal."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeGuard

from .errors import InvalidMessage, MeshError, MeshHandlerError, MeshNoHandlerError

__all__ = [
    "MAX_TIMEOUT_MS",
    "MIN_TIMEOUT_MS",
    "NO_HANDLER_PREFIX",
    "Broadcast",
    "InvalidMessage",
    "Reply",
    "Request",
    "RequestHeartbeat",
    "broadcast",
    "encode",
    "error_reply",
    "no_handler_reply",
    "parse_broadcast",
    "parse_inbox",
    "reply",
    "reply_error",
    "request",
    "request_heartbeat",
    "timeout_ms_from_wire",
    "timeout_ms_to_wire",
]

#: Error text of a reply to a request whose type has no handler, followed by the type.
NO_HANDLER_PREFIX = "MESH_NO_HANDLER:"

#: Every ``timeoutMs`` (a request's, a forward's) is clamped to this range, in ms, before
#: it becomes a delay, whether sent or received (1 ms to 24 h). 24 h also stays below
#: the 2^31 - 1 ms past which a JavaScript timer fires at once.
MIN_TIMEOUT_MS = 1
MAX_TIMEOUT_MS = 86_400_000


# What parse() returns is not frozen (nothing changes it): a frozen dataclass sets each
# field through object.__setattr__, four times the cost, and one is made per message.
@dataclass(slots=True)
class Request:
    """``{"requestId", "senderInstanceId", "type", "data", "timeoutMs"}``."""

    request_id: str
    sender: int
    type: str
    data: Any
    #: The caller's timeout, clamped to [MIN_TIMEOUT_MS, MAX_TIMEOUT_MS]; None when
    #: absent or not a positive number.
    timeout_ms: float | None


@dataclass(slots=True)
class Reply:
    """``{"requestId", "reply": true, "data"}`` or ``{..., "error"}``."""

    request_id: str
    data: Any
    error: str | None


@dataclass(slots=True)
class RequestHeartbeat:
    """``{"requestId", "heartbeat": true}``: the handler is still running."""

    request_id: str


@dataclass(slots=True)
class Broadcast:
    """``{"broadcast": true, "senderInstanceId", "type", "data"}``."""

    sender: int
    type: str
    data: Any


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> NoReturn:
    # NaN/Infinity are not JSON (no TypeScript node writes them) and, as a delay, they
    # would corrupt the event loop's timer heap.
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)  # "1e400" is valid JSON but parses to inf
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


# Built once: json.dumps/json.loads with options build a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
# JSONEncoder.encode still builds its C encoder on every call (a fifth of the cost of a
# small message): this is that encoder, built once. Without its circular-reference
# markers (a dict it fills while it runs): a cycle ends in RecursionError, told below.
_make_c_encoder: Callable[..., Callable[[Any, int], list[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
_C_ENCODE = (
    _make_c_encoder(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    if _make_c_encoder is not None
    else None
)


def timeout_ms_from_wire(value: Any) -> float | None:
    """A received ``timeoutMs`` clamped to [MIN_TIMEOUT_MS, MAX_TIMEOUT_MS]; None unless
    a positive number (a bool, NaN or a string is no timeout)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        return None
    # Clamped as it is, before any float conversion: a huge int would overflow it.
    return MAX_TIMEOUT_MS if value > MAX_TIMEOUT_MS else max(value, MIN_TIMEOUT_MS)


def timeout_ms_to_wire(seconds: float) -> int:
    """The ``timeoutMs`` to send for a timeout of ``seconds`` (positive), clamped as
    :func:`timeout_ms_from_wire` would clamp it on arrival."""
    return min(max(MIN_TIMEOUT_MS, round(seconds * 1000)), MAX_TIMEOUT_MS)


def encode(message: dict[str, Any]) -> bytes:
    """JSON as ``JSON.stringify`` writes it: no spaces, insertion order, non-ASCII raw,
    "/" unescaped, a lone surrogate as a ``\\uXXXX`` escape. Raises TypeError/ValueError
    for values JSON cannot carry."""
    if _C_ENCODE is None:
        text = _ENCODER.encode(message)
    else:
        try:
            text = "".join(_C_ENCODE(message, 0))
        except RecursionError:
            raise ValueError("Circular reference detected (or nested too deep)") from None
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate (a peer's "\\ud800" escape read back, a handler's str) is not
        # UTF-8. Within JSON it can only sit inside a string, where the escape is what
        # JSON.stringify writes and reads back as the same string.
        return text.encode("utf-8", "backslashreplace")


def request(request_id: str, sender: int, type: str, data: Any, timeout_ms: int) -> bytes:
    """A request; ``timeoutMs`` is always present (the caller's or the default)."""
    return encode(
        {
            "requestId": request_id,
            "senderInstanceId": sender,
            "type": type,
            "data": data,
            "timeoutMs": timeout_ms,
        }
    )


def reply(request_id: str, data: Any) -> bytes:
    """A successful reply (TypeError/ValueError if ``data`` is not JSON)."""
    return encode({"requestId": request_id, "reply": True, "data": data})


def error_reply(request_id: str, error: str) -> bytes:
    """A reply saying the handler failed with ``error``."""
    return encode({"requestId": request_id, "reply": True, "error": error})


def no_handler_reply(request_id: str, type: str) -> bytes:
    """The reply to a request nobody handles: ``MESH_NO_HANDLER:<type>``."""
    return error_reply(request_id, NO_HANDLER_PREFIX + type)


def request_heartbeat(request_id: str) -> bytes:
    """Sent to the caller while the handler runs; restarts the caller's timeout."""
    return encode({"requestId": request_id, "heartbeat": True})


def broadcast(sender: int, type: str, data: Any) -> bytes:
    """A broadcast to every node."""
    return encode({"broadcast": True, "senderInstanceId": sender, "type": type, "data": data})


def reply_error(error: str) -> MeshError:
    """The caller-side exception for a reply's error text."""
    if error.startswith(NO_HANDLER_PREFIX):
        return MeshNoHandlerError(error[len(NO_HANDLER_PREFIX) :])
    return MeshHandlerError(error)


def parse_inbox(payload: bytes) -> Request | Reply | RequestHeartbeat:
    """A message from a node's inbox, dispatched by field: ``heartbeat`` truthy, else
    ``reply`` truthy, else a request."""
    message = _decode(payload)
    request_id = message.get("requestId")
    if message.get("heartbeat"):
        if not isinstance(request_id, str):
            raise InvalidMessage("request heartbeat without a requestId")
        return RequestHeartbeat(request_id)
    if message.get("reply"):
        if not isinstance(request_id, str):
            raise InvalidMessage("reply without a requestId")
        error = message.get("error")
        text = None if error is None else error if isinstance(error, str) else str(error)
        return Reply(request_id, message.get("data"), text)
    sender, type = message.get("senderInstanceId"), message.get("type")
    if not isinstance(request_id, str) or not _is_int(sender) or not isinstance(type, str):
        raise InvalidMessage("request without requestId (str), senderInstanceId (int), type (str)")
    timeout_ms = timeout_ms_from_wire(message.get("timeoutMs"))
    return Request(request_id, sender, type, message.get("data"), timeout_ms)


def parse_broadcast(payload: bytes) -> Broadcast:
    """A message from the broadcast channel."""
    message = _decode(payload)
    sender, type = message.get("senderInstanceId"), message.get("type")
    if not message.get("broadcast") or not _is_int(sender) or not isinstance(type, str):
        raise InvalidMessage("broadcast without senderInstanceId (int) and type (str)")
    return Broadcast(sender, type, message.get("data"))


def _decode(payload: bytes) -> dict[str, Any]:
    try:
        if payload[:1] == b"{" and payload[1:2] != b"\x00":
            # What json.loads(bytes) does for this (the usual) case, minus its checks.
            message = _DECODER.decode(payload.decode("utf-8", "surrogatepass"))
        else:  # BOMs, UTF-16/32, leading white space: as json.loads has it
            message = json.loads(
                payload, parse_constant=_reject_constant, parse_float=_finite_float
            )
    except _NonFinite as exc:
        raise InvalidMessage(f"non-finite number {exc} in JSON") from None
    except ValueError:  # also bytes that are not UTF-8
        raise InvalidMessage("not JSON") from None
    except RecursionError:
        raise InvalidMessage("JSON nested too deeply") from None
    if not isinstance(message, dict):
        raise InvalidMessage("not a JSON object")
    return message


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
