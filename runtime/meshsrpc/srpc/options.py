"""The keyword options of SrpcServer and SrpcClient as TypedDicts.

Subclasses that pass options through (``**options: Unpack[SrpcServerOptions]``) keep
them typed: a misspelled or mistyped option is a mypy error, not a silent default.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Sequence
from typing import TypedDict

__all__ = ["SrpcClientOptions", "SrpcServerOptions"]


class SrpcServerOptions(TypedDict, total=False):
    """SrpcServer's keyword arguments (see its docstring for each)."""

    path: str
    auth_secret: str | None
    clock_drift: float
    max_frame_size: int
    max_in_flight: int
    inactivity_timeout: float
    max_send_buffer: int
    close_timeout: float
    compression: str | None
    replay_protection: bool
    allow_unsigned: bool
    expose_errors: bool
    max_connections: int | None
    handshake_timeout: float
    max_early_data: int
    max_early_streams: int
    peer_max_frame_size: int | None


class SrpcClientOptions(TypedDict, total=False):
    """SrpcClient's keyword arguments but ``client_meta`` (generated clients type it)."""

    client_secret: str | None
    enable_reconnect: bool
    protocol_version: int
    app_version: str
    ping_interval: float
    pong_timeout: float
    connection_check_timeout: float
    connect_timeout: float
    reconnect_delay: float
    max_reconnect_delay: float
    max_frame_size: int
    max_send_buffer: int
    ssl: ssl_module.SSLContext | None
    fallback_urls: Sequence[str]
    peer_max_frame_size: int | None
    transport: str | None
