"""Shared helpers of the SRPC tests (the fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from meshsrpc import SrpcClient, SrpcServer
from meshsrpc.testing import eventually

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage

__all__ = ["ClientFactory", "ServerFactory", "eventually", "self_signed", "url_of"]

ServerFactory = Callable[..., Awaitable[SrpcServer[ClientMessage, ServerMessage]]]
ClientFactory = Callable[..., SrpcClient[ClientMessage, ServerMessage]]


def url_of(server: SrpcServer[Any, Any], path: str = "/srpc") -> str:
    """The ws:// URL of a listening test server."""
    return f"ws://127.0.0.1:{server.port}{path}"


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key (openssl)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
