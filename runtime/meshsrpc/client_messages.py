"""The forwarding messages of the client service (WIRE.md §3): ``forward``, ``kickClient``
and ``updateMeta``, carried as mesh requests (``mesh_messages``) between nodes.

Built exactly as the TypeScript nodes build them, and read so that a malformed one gets
a well-formed answer (an error, or ``false``), never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ClientDisconnectedError, ClientInvocationError
from .mesh_messages import timeout_ms_from_wire, timeout_ms_to_wire

__all__ = [
    "FORWARD",
    "KICK_CLIENT",
    "OPS_KICK",
    "UPDATE_META",
    "Forward",
    "UpdateMeta",
    "forward",
    "forward_error",
    "forward_reply",
    "kick_client",
    "kick_reply",
    "parse_forward",
    "parse_forward_reply",
    "parse_kick_client",
    "parse_update_meta",
    "parse_update_meta_reply",
    "update_meta",
    "update_meta_reply",
]

FORWARD = "forward"
KICK_CLIENT = "kickClient"
UPDATE_META = "updateMeta"
#: An operator's kick (WIRE.md §6, an extension): ``{"clientId"}`` → ``{"kicked": bool}``.
OPS_KICK = "opsKick"

#: The reply to a ``forward`` request that is not one.
MALFORMED_FORWARD: dict[str, Any] = {"error": "malformed forward request", "errorName": "Error"}


# Not frozen (nothing changes it): one is made per forwarded call, and a frozen
# dataclass's __init__ costs four times as much.
@dataclass(slots=True)
class Forward:
    """``{"clientId", "type", "data", "timeoutMs"?}``: call a client held by the receiver."""

    client_id: str
    type: str
    data: Any
    #: The caller's timeout (ms), clamped as on every mesh message; None unless a
    #: positive number.
    timeout_ms: float | None


@dataclass(frozen=True)
class UpdateMeta:
    """``{"clientId", "metadata"}``: replace a client's metadata on its node."""

    client_id: str
    metadata: Any


# --- forward ------------------------------------------------------------------------


def forward(client_id: str, type: str, data: Any, seconds: float | None) -> dict[str, Any]:
    """A ``forward`` request; ``timeoutMs`` only when the caller gave a timeout (as TS)."""
    request: dict[str, Any] = {"clientId": client_id, "type": type, "data": data}
    if seconds is not None:
        # invoke always gives one: the call's, or request_timeout (TypeScript callers
        # leave it out when their call gave none).
        request["timeoutMs"] = timeout_ms_to_wire(seconds)
    return request


def parse_forward(data: Any) -> Forward | None:
    """The ``forward`` request in ``data``; None if it is malformed."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("clientId"), str)
        or not isinstance(data.get("type"), str)
    ):
        return None
    timeout_ms = timeout_ms_from_wire(data.get("timeoutMs"))
    return Forward(data["clientId"], data["type"], data.get("data"), timeout_ms)


def forward_reply(result: Any) -> dict[str, Any]:
    """The reply carrying a client's answer."""
    return {"data": result}


def forward_error(exc: BaseException) -> dict[str, Any]:
    """The reply carrying a delivery failure: as data, not as a mesh error (WIRE.md §3)."""
    name = (
        "ClientDisconnectedError"
        if isinstance(exc, ClientDisconnectedError)
        else type(exc).__name__
    )
    return {"error": str(exc) or type(exc).__name__, "errorName": name}


def parse_forward_reply(reply: Any, node_id: int, client_id: str) -> Any:
    """The client's answer in a ``forward`` reply; raises the failure it carries."""
    if not isinstance(reply, dict):
        raise ClientInvocationError(f"node {node_id} sent a malformed forward reply")
    error = reply.get("error")
    if error is not None:
        if reply.get("errorName") == "ClientDisconnectedError":
            raise ClientDisconnectedError(client_id)
        name = reply.get("errorName")
        raise ClientInvocationError(
            error if isinstance(error, str) else str(error),
            name if isinstance(name, str) else None,
        )
    return reply.get("data")


# --- kickClient -----------------------------------------------------------------------


def kick_client(client_id: str) -> dict[str, Any]:
    """A ``kickClient`` request: the client registered elsewhere; close its stream."""
    return {"clientId": client_id}


def parse_kick_client(data: Any) -> str | None:
    """The client id of a ``kickClient`` request; None if it is malformed."""
    client_id = data.get("clientId") if isinstance(data, dict) else None
    return client_id if isinstance(client_id, str) else None


def kick_reply(kicked: bool) -> dict[str, Any]:
    """``{"kicked": bool}``."""
    return {"kicked": kicked}


# --- updateMeta -----------------------------------------------------------------------


def update_meta(client_id: str, metadata: Any) -> dict[str, Any]:
    """An ``updateMeta`` request."""
    return {"clientId": client_id, "metadata": metadata}


def parse_update_meta(data: Any) -> UpdateMeta | None:
    """The ``updateMeta`` request in ``data``; None if it is malformed."""
    client_id = data.get("clientId") if isinstance(data, dict) else None
    if not isinstance(client_id, str):
        return None
    return UpdateMeta(client_id, data.get("metadata"))


def update_meta_reply(updated: bool) -> dict[str, Any]:
    """``{"updated": bool}``."""
    return {"updated": updated}


def parse_update_meta_reply(reply: Any) -> bool:
    """True only for a reply that says ``"updated": true``."""
    return isinstance(reply, dict) and reply.get("updated") is True
