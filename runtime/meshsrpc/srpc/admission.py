"""Whether an upgrade request may become a stream: capacity, path, then authentication."""

from __future__ import annotations

import logging
from typing import Literal, Protocol, TypeAlias

from .auth import (
    NOT_CONFIGURED,
    Authorizer,
    HandshakeAccepted,
    HandshakeRejected,
    HandshakeRequest,
    KeyFetcher,
    MemoryReplayGuard,
    ReplayGuard,
    authenticate,
)
from .clientmeta import ClientMetaSchema

__all__ = ["Admission", "AdmissionSettings", "AuthMode"]

# These lines are the server's (operators filter its logger for the auth mode).
logger = logging.getLogger("meshsrpc.srpc.server")

AuthMode: TypeAlias = Literal["authorizer", "key-fetcher", "secret", "unsigned", "none"]
_AUTH_MODE_TEXT = {
    "authorizer": "a custom authorizer decides every connection",
    "key-fetcher": "HMAC signatures checked with per-client secrets (key fetcher)",
    "secret": "HMAC signatures checked with the shared secret",
}


class AdmissionSettings(Protocol):
    """The server settings an upgrade decision reads (each time: they may change)."""

    @property
    def path(self) -> str: ...
    @property
    def max_connections(self) -> int | None: ...
    @property
    def auth_secret(self) -> str | None: ...
    @property
    def allow_unsigned(self) -> bool: ...
    @property
    def clock_drift(self) -> float: ...
    @property
    def client_meta_schema(self) -> ClientMetaSchema | None: ...


class Admission:
    """Decides upgrade requests: 503 while closing or full, 404 off the path, then auth.py."""

    def __init__(self, settings: AdmissionSettings, *, replay_protection: bool) -> None:
        self._settings = settings
        self.authorizer: Authorizer | None = None
        self.key_fetcher: KeyFetcher | None = None
        # A signed handshake URL is accepted once (per process here; MeshSrpcServer
        # shares the guard across nodes through Redis). Off: replay_protection=False.
        self.replay_guard: ReplayGuard | None = MemoryReplayGuard() if replay_protection else None
        self.closing = False
        """Refuse every upgrade with 503 (the server is closing)."""
        self.draining = False
        """Refuse every upgrade with 503 (the server is moving its clients elsewhere)."""
        self._unconfigured_logged = False

    @property
    def auth_mode(self) -> AuthMode:
        """How upgrades are authenticated now; ``"none"`` refuses every connection (500)."""
        if self.authorizer is not None:
            return "authorizer"
        if self.key_fetcher is not None:
            return "key-fetcher"
        if self._settings.auth_secret is not None:
            return "secret"
        return "unsigned" if self._settings.allow_unsigned else "none"

    def log_auth_mode(self) -> None:
        """Say how connections are authenticated (once the server starts serving)."""
        mode = self.auth_mode
        if mode == "unsigned":
            logger.warning(
                "SRPC auth: allow_unsigned=True, accepting unsigned connections "
                "(development only: anyone can connect as any client id)"
            )
        elif mode == "none":
            self._log_unconfigured_once()
        else:
            logger.info("SRPC auth: %s", _AUTH_MODE_TEXT[mode])

    def _log_unconfigured_once(self) -> None:
        if self._unconfigured_logged:
            return
        self._unconfigured_logged = True
        logger.error(
            "SRPC auth is not configured: refusing every connection with HTTP 500. Set "
            "SRPC_AUTH_SECRET (or auth_secret=), set_client_key_fetcher() or "
            "set_client_authorizer(); for local development only, allow_unsigned=True."
        )

    async def decide(
        self, request: HandshakeRequest, open_streams: int
    ) -> HandshakeAccepted | HandshakeRejected:
        """Accept or refuse ``request`` while ``open_streams`` streams are open."""
        settings = self._settings
        if self.closing or self.draining:
            return HandshakeRejected(503, "Server is closing")
        if settings.max_connections is not None and open_streams >= settings.max_connections:
            return HandshakeRejected(503, "Too many connections")
        if request.path != settings.path:
            return HandshakeRejected(404, "Not found")
        verdict = await authenticate(
            request,
            secret=settings.auth_secret,
            clock_drift=settings.clock_drift,
            authorizer=self.authorizer,
            key_fetcher=self.key_fetcher,
            replay_guard=self.replay_guard,
            allow_unsigned=settings.allow_unsigned,
            meta_schema=settings.client_meta_schema,
        )
        if verdict is NOT_CONFIGURED:
            self._log_unconfigured_once()
        return verdict
