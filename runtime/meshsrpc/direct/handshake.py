"""Mutual authentication of two nodes on a new direct connection (mesh secret, HMAC).

Four frames of compact JSON, two each way:

1. caller → listener ``{"v": 1, "mesh": base, "from": caller id, "to": listener id, "nonce": hex}``
2. listener → caller ``{"id": listener id, "nonce": hex, "proof": hex}``
3. caller → listener ``{"proof": hex}``
4. listener → caller ``{"ok": true}`` (or ``{"ok": false, "error": text}`` and close)

Each proof is HMAC-SHA256 over both nonces, both ids and the mesh (``P:mesh:K``)
with the mesh secret; each side checks the other's with a constant-time compare. A
proof therefore only vouches for this connection, between these two node ids, in
this mesh. (Without TLS it does not stop an active man in the middle; see docs.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from .channel import Channel

__all__ = ["PROTOCOL_VERSION", "HandshakeError", "accept", "initiate"]

PROTOCOL_VERSION = 1


class HandshakeError(ConnectionError):
    """The other side is not a member of this mesh, or not the node expected."""


def _proof(secret: bytes, role: str, base: str, caller: int, listener: int, nonces: str) -> str:
    text = f"meshsrpc-direct/{PROTOCOL_VERSION}|{role}|{base}|{caller}|{listener}|{nonces}"
    return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()


def _send(channel: Channel, message: dict[str, Any]) -> None:
    channel.send(json.dumps(message, separators=(",", ":")).encode("utf-8"))
    channel.flush()  # now: the side that gives up next may abort the connection


async def _read(channel: Channel) -> dict[str, Any]:
    frame = await channel.read_frame()
    try:
        message = json.loads(frame)
    except ValueError as exc:
        raise HandshakeError("handshake frame is not JSON") from exc
    if not isinstance(message, dict):
        raise HandshakeError("handshake frame is not a JSON object")
    return message


def _field(message: dict[str, Any], name: str, kind: type) -> Any:
    value = message.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise HandshakeError(f"handshake frame lacks {name!r}")
    return value


async def initiate(channel: Channel, secret: bytes, base: str, caller: int, listener: int) -> None:
    """The caller's side: prove ourselves, check that ``listener`` answered, wait for ok."""
    nonce = secrets.token_hex(16)
    _send(
        channel,
        {"v": PROTOCOL_VERSION, "mesh": base, "from": caller, "to": listener, "nonce": nonce},
    )
    challenge = await _read(channel)
    if challenge.get("ok") is False:
        raise HandshakeError(f"refused: {challenge.get('error')}")
    their_nonce = _field(challenge, "nonce", str)
    nonces = f"{nonce}|{their_nonce}"
    # Our proof goes out first, so that a listener with another secret logs the refusal.
    _send(channel, {"proof": _proof(secret, "caller", base, caller, listener, nonces)})
    expected = _proof(secret, "listener", base, caller, listener, nonces)
    if _field(challenge, "id", int) != listener:
        raise HandshakeError(f"the address is node {challenge.get('id')}'s, not node {listener}'s")
    if not hmac.compare_digest(str(challenge.get("proof", "")), expected):
        raise HandshakeError("the listener does not know the mesh secret")
    verdict = await _read(channel)
    if verdict.get("ok") is not True:
        raise HandshakeError(f"refused: {verdict.get('error')}")


async def accept(channel: Channel, secret: bytes, base: str, listener: int) -> int:
    """The listener's side; returns the caller's node id once it proved the secret."""
    hello = await _read(channel)

    def refuse(reason: str) -> HandshakeError:
        _send(channel, {"ok": False, "error": reason})
        return HandshakeError(reason)

    if hello.get("v") != PROTOCOL_VERSION:
        raise refuse(f"unsupported direct protocol version {hello.get('v')!r}")
    if hello.get("mesh") != base:
        raise refuse("not this mesh")
    if hello.get("to") != listener:
        raise refuse(f"this is node {listener}, not node {hello.get('to')}")
    caller: int = _field(hello, "from", int)
    their_nonce = _field(hello, "nonce", str)
    nonce = secrets.token_hex(16)
    nonces = f"{their_nonce}|{nonce}"
    proof = _proof(secret, "listener", base, caller, listener, nonces)
    _send(channel, {"id": listener, "nonce": nonce, "proof": proof})
    answer = await _read(channel)
    expected = _proof(secret, "caller", base, caller, listener, nonces)
    if not hmac.compare_digest(str(answer.get("proof", "")), expected):
        raise refuse("wrong mesh secret")
    return caller


def confirm(channel: Channel) -> None:
    """Tell the caller it is accepted (after the listener opened the channel)."""
    _send(channel, {"ok": True})
