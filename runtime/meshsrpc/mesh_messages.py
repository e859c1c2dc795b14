"""The JSON messages of the mesh (WIRE.md §1): written byte for byte as the TypeScript
nodes write them, and checked on arrival so that a bad message is dropped, never fatal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeGuard

from .errors import InvalidMessage, MeshError, MeshHandlerError, MeshNoHandlerError

__all__ = [
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
]

#: Error text of a reply to a request whose type has no handler, followed by the type.
NO_HANDLER_PREFIX = "MESH_NO_HANDLER:"


@dataclass(frozen=True)
class Request:
    """``{"requestId", "senderInstanceId", "type", "data", "timeoutMs"}``."""

    request_id: str
    sender: int
    type: str
    data: Any
    #: The caller's timeout; None when absent or not a positive number.
    timeout_ms: float | None


@dataclass(frozen=True)
class Reply:
    """``{"requestId", "reply": true, "data"}`` or ``{..., "error"}``."""

    request_id: str
    data: Any
    error: str | None


@dataclass(frozen=True)
class RequestHeartbeat:
    """``{"requestId", "heartbeat": true}``: the handler is still running."""

    request_id: str


@dataclass(frozen=True)
class Broadcast:
    """``{"broadcast": true, "senderInstanceId", "type", "data"}``."""

    sender: int
    type: str
    data: Any


# Built once: json.dumps/json.loads with options build a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_DECODER = json.JSONDecoder()


def encode(message: dict[str, Any]) -> bytes:
    """JSON as ``JSON.stringify`` writes it: no spaces, insertion order, non-ASCII raw,
    "/" unescaped. Raises TypeError/ValueError for values JSON cannot carry."""
    return _ENCODER.encode(message).encode()


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
    timeout = message.get("timeoutMs")
    valid_timeout = (_is_int(timeout) or isinstance(timeout, float)) and timeout > 0
    return Request(
        request_id, sender, type, message.get("data"), timeout if valid_timeout else None
    )


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
            message = json.loads(payload)
    except ValueError:  # also bytes that are not UTF-8
        raise InvalidMessage("not JSON") from None
    if not isinstance(message, dict):
        raise InvalidMessage("not a JSON object")
    return message


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
