"""Upgrade-time checks: required query parameters, HMAC signatures, custom authorizers.

Runs before the WebSocket is accepted, so a refusal is a plain HTTP status:
400 for missing ``id``/``cid``/``appv`` or a metadata value of the wrong type, 403 for
failed auth (including a replayed signature), 500 when an authorizer, key fetcher or replay
guard raises.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias
from urllib.parse import parse_qsl

from .clientmeta import ClientMetaError, ClientMetaSchema

__all__ = [
    "NOT_CONFIGURED",
    "Authorizer",
    "HandshakeAccepted",
    "HandshakeRejected",
    "HandshakeRequest",
    "KeyFetcher",
    "MemoryReplayGuard",
    "ReplayGuard",
    "authenticate",
    "parse_query",
    "replay_key",
    "sign",
    "verify_signature",
]

logger = logging.getLogger(__name__)

META_PARAM_PREFIX = "m--"


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """The HTTP upgrade request, independent of the server library."""

    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    remote_address: str


Authorizer: TypeAlias = Callable[
    [Mapping[str, str], HandshakeRequest],
    "bool | dict[str, Any] | Awaitable[bool | dict[str, Any]]",
]
"""fn(query, request) -> True/False, or a dict to accept and merge into ``stream.meta``."""

KeyFetcher: TypeAlias = Callable[[str], "str | Awaitable[str | None] | None"]
"""fn(client_id) -> that client's secret, or None to refuse it."""


@dataclass(frozen=True, slots=True)
class HandshakeAccepted:
    """Upgrade allowed; ``meta`` seeds ``stream.meta``."""

    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HandshakeRejected:
    """Upgrade refused with an HTTP status."""

    status: int
    reason: str


NOT_CONFIGURED = HandshakeRejected(500, "Server authentication is not configured")
"""The refusal of every upgrade by a server with no way to authenticate clients."""


def parse_query(raw: str | bytes) -> dict[str, str]:
    """Parse a query string; the first occurrence of a name wins (like ``URLSearchParams.get``)."""
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        query.setdefault(name, value)
    return query


def sign(secret: str, authv: str, appv: str, ts: str, id: str, cid: str) -> str:
    """Hex HMAC-SHA256 over ``authv\\nappv\\nts\\nid\\ncid\\n`` (WIRE.md §4)."""
    payload = f"{authv}\n{appv}\n{ts}\n{id}\n{cid}\n".encode()
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def verify_signature(
    query: Mapping[str, str], secret: str, clock_drift: float, now_ms: int | None = None
) -> bool:
    """Check ``signature`` and that ``ts`` is within ``clock_drift`` seconds of now."""
    try:
        ts = int(query.get("ts", ""))
    except ValueError:
        return False
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    if abs(now - ts) > clock_drift * 1000:
        return False
    expected = sign(
        secret,
        query.get("authv", ""),
        query.get("appv", ""),
        query.get("ts", ""),
        query.get("id", ""),
        query.get("cid", ""),
    )
    signature = query.get("signature", "")
    if not signature.isascii():
        return False  # compare_digest raises TypeError on non-ASCII text
    return hmac.compare_digest(expected, signature.lower())


class ReplayGuard(Protocol):
    """Remembers signed handshakes, so that a captured URL cannot be used twice.

    ``SrpcServer`` keeps them in memory (one process); ``MeshSrpcServer`` in Redis, so
    a handshake accepted by one node is refused by every other node too.
    """

    async def first_use(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; True only if it was not recorded already."""
        ...


def replay_key(query: Mapping[str, str]) -> str:
    """The identity of one signed handshake: a digest of its (cid, id, ts)."""
    fields = "\n".join(query.get(name, "") for name in ("cid", "id", "ts"))
    return hashlib.sha256(fields.encode()).hexdigest()


class MemoryReplayGuard:
    """A :class:`ReplayGuard` for one process, bounded to ``max_entries`` keys."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> expiry (monotonic)

    async def first_use(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; True only if it was not recorded already."""
        now = time.monotonic()
        # Expiries are mostly in insertion order (one ttl per server): drop from the front.
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        expiry = self._seen.get(key)
        if expiry is not None and expiry > now:
            return False
        self._seen[key] = now + ttl
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return True


async def _first_use(
    replay_guard: ReplayGuard | None, query: Mapping[str, str], ttl: float
) -> bool:
    return replay_guard is None or await replay_guard.first_use(replay_key(query), ttl)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def authenticate(
    request: HandshakeRequest,
    *,
    secret: str | None,
    clock_drift: float,
    authorizer: Authorizer | None,
    key_fetcher: KeyFetcher | None,
    replay_guard: ReplayGuard | None = None,
    allow_unsigned: bool = False,
    meta_schema: ClientMetaSchema | None = None,
) -> HandshakeAccepted | HandshakeRejected:
    """Decide an upgrade. A custom authorizer replaces the signature check when set.

    With a ``meta_schema``, the ``m--`` values are converted to their fields' types
    (an authorizer's dict is merged after, as given); a value that does not convert
    is refused with 400 naming the field.

    With a ``replay_guard``, a valid signature is accepted once: the same (cid, id, ts)
    is refused (403) while its ``ts`` could still pass the clock-drift check. With no
    secret, key fetcher or authorizer, every upgrade is refused (:data:`NOT_CONFIGURED`,
    500, as the TypeScript server does) unless ``allow_unsigned``.
    """
    query = request.query
    for required in ("id", "cid", "appv"):
        if not query.get(required):
            return HandshakeRejected(400, f"Missing query parameter {required}")
    meta: dict[str, Any] = {
        name[len(META_PARAM_PREFIX) :]: value
        for name, value in query.items()
        if name.startswith(META_PARAM_PREFIX)
    }
    if meta_schema is not None:
        try:
            meta = meta_schema.parse(meta)
        except ClientMetaError as error:
            return HandshakeRejected(400, f"Bad {error}")
    if authorizer is not None:
        try:
            verdict = await _maybe_await(authorizer(query, request))
        except Exception:
            logger.exception("client authorizer failed for %r", query.get("cid"))
            return HandshakeRejected(500, "Authorizer failed")
        if isinstance(verdict, dict):
            meta.update(verdict)
        elif not verdict:
            return HandshakeRejected(403, "Unauthorized")
        return HandshakeAccepted(meta)
    if key_fetcher is not None:
        try:
            client_secret = await _maybe_await(key_fetcher(query["cid"]))
        except Exception:
            logger.exception("client key fetcher failed for %r", query.get("cid"))
            return HandshakeRejected(500, "Key fetcher failed")
        if client_secret is None or not verify_signature(query, client_secret, clock_drift):
            return HandshakeRejected(403, "Unauthorized")
        return await _check_replay(query, meta, replay_guard, clock_drift)
    if secret is not None:
        if not verify_signature(query, secret, clock_drift):
            return HandshakeRejected(403, "Unauthorized")
        return await _check_replay(query, meta, replay_guard, clock_drift)
    if allow_unsigned:
        return HandshakeAccepted(meta)
    return NOT_CONFIGURED


async def _check_replay(
    query: Mapping[str, str],
    meta: dict[str, Any],
    replay_guard: ReplayGuard | None,
    clock_drift: float,
) -> HandshakeAccepted | HandshakeRejected:
    # A ts is accepted from now - drift to now + drift, so it stays usable until
    # 2 x drift from now at most: remember it that long.
    try:
        first = await _first_use(replay_guard, query, 2 * clock_drift)
    except Exception:
        logger.exception("replay guard failed for %r", query.get("cid"))
        return HandshakeRejected(500, "Replay check failed")
    if not first:
        logger.warning("refusing a replayed handshake of %r", query.get("cid"))
        return HandshakeRejected(403, "Unauthorized")
    return HandshakeAccepted(meta)
