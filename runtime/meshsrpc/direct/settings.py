"""Settings of the direct node-to-node data plane: explicit, or from MESH_DIRECT_* variables."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from ssl import SSLContext

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "DirectSettings", "resolve_direct_settings"]

DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024
_OFF = {"0", "off", "false", "no"}


@dataclass(frozen=True)
class DirectSettings:
    """Where a node listens for direct calls from other nodes, and how they prove membership.

    ``secret`` is the mesh secret every node shares (both ends of a connection prove
    they know it, HMAC challenge); with none, direct channels stay off. ``host``/``port``
    is the listening address (port 0 = any free port); ``advertise_host``/
    ``advertise_port`` is what other nodes connect to (default: the listening address;
    set it behind NAT or in containers). ``ssl`` is the listener's TLS context (as for
    :meth:`SrpcServer.listen`), ``client_ssl`` the context for connecting to TLS peers.
    """

    secret: str | bytes | None = None
    host: str = "127.0.0.1"
    port: int = 0
    advertise_host: str | None = None
    advertise_port: int | None = None
    ssl: SSLContext | None = None
    client_ssl: SSLContext | None = None
    enabled: bool = True
    #: Seconds before a peer whose address did not connect (or who has none) is tried again.
    retry_interval: float = 5.0
    connect_timeout: float = 2.0
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    #: Unsent bytes on one connection past which callers wait (they resume below a
    #: quarter of it); replies and request heartbeats then go through Redis.
    write_buffer_high: int = 1024 * 1024
    #: Seconds a paused connection may wait for its peer to read before it is dropped
    #: (calls written to it fail with MeshConnectionLostError, waiting ones go through Redis).
    stall_timeout: float = 10.0
    #: Seconds between two passes that forget the nodes gone from the address hash
    #: (every node, not only the leader that removes them).
    prune_interval: float = 30.0

    @property
    def secret_bytes(self) -> bytes:
        """The secret as bytes; empty when there is none."""
        if self.secret is None:
            return b""
        return self.secret.encode("utf-8") if isinstance(self.secret, str) else self.secret

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DirectSettings:
        """Read ``MESH_DIRECT`` (``0``/``off`` turns it off), ``MESH_DIRECT_SECRET``,
        ``MESH_DIRECT_HOST``, ``MESH_DIRECT_PORT``, ``MESH_DIRECT_ADVERTISE_HOST``,
        ``MESH_DIRECT_ADVERTISE_PORT`` and ``MESH_DIRECT_TLS_CERT``/``_KEY``/``_CA``
        (a CA makes both ends verify each other's certificate)."""
        env = os.environ if env is None else env
        cert = env.get("MESH_DIRECT_TLS_CERT") or None
        key = env.get("MESH_DIRECT_TLS_KEY") or None
        ca = env.get("MESH_DIRECT_TLS_CA") or None
        server_ssl, client_ssl = (None, None)
        if cert or ca:
            server_ssl, client_ssl = tls_contexts(cert, key, ca)
        advertise_port = env.get("MESH_DIRECT_ADVERTISE_PORT")
        return cls(
            secret=env.get("MESH_DIRECT_SECRET") or None,
            host=env.get("MESH_DIRECT_HOST") or "127.0.0.1",
            port=int(env.get("MESH_DIRECT_PORT") or 0),
            advertise_host=env.get("MESH_DIRECT_ADVERTISE_HOST") or None,
            advertise_port=int(advertise_port) if advertise_port else None,
            ssl=server_ssl,
            client_ssl=client_ssl,
            enabled=(env.get("MESH_DIRECT") or "1").strip().lower() not in _OFF,
        )


def tls_contexts(
    cert: str | None, key: str | None, ca: str | None
) -> tuple[SSLContext | None, SSLContext]:
    """A listener context (needs ``cert``) and a client context for the data plane.

    With ``ca`` each end verifies the other's certificate against it (mutual TLS).
    """
    server_ssl = None
    if cert:
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(cert, key)
        if ca:
            server_ssl.load_verify_locations(ca)
            server_ssl.verify_mode = ssl.CERT_REQUIRED
    client_ssl = ssl.create_default_context(cafile=ca)
    if cert:
        client_ssl.load_cert_chain(cert, key)
    return server_ssl, client_ssl


def resolve_direct_settings(direct: DirectSettings | bool | None) -> DirectSettings:
    """``None``/``True``: the environment; ``False``: off; settings: as given."""
    if direct is False:
        return DirectSettings(enabled=False)
    if direct is None or direct is True:
        return DirectSettings.from_env()
    return direct
