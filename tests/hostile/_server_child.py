"""A test SRPC server in its own process, for probes that could take a whole process down.

Usage: ``python _server_child.py [--nofile N] [--handshake-timeout S]``. Prints its port,
then serves until killed; logs to stderr. ``uEcho`` with message ``exit`` raises
SystemExit (as argparse does on bad input), ``interrupt`` raises KeyboardInterrupt; the
connection handler raises SystemExit for client ``exit-on-connect``, the disconnect
handler for ``exit-on-disconnect``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from meshsrpc import SrpcServer, SrpcStream
from meshsrpc.loops import run

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    ServerMessage,
    UEchoRequest,
    UEchoResponse,
)
from tests.hostile._support import SECRET


def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
    if request.message == "exit":
        raise SystemExit(2)
    if request.message == "interrupt":
        raise KeyboardInterrupt
    return UEchoResponse(message=request.message)


def on_connect(stream: SrpcStream) -> None:
    if stream.client_id == "exit-on-connect":
        raise SystemExit(2)


def on_disconnect(stream: SrpcStream, cause: str) -> None:
    if stream.client_id == "exit-on-disconnect":
        raise SystemExit(2)


async def main(handshake_timeout: float | None) -> None:
    options: dict[str, Any] = {}
    if handshake_timeout is not None:
        options["handshake_timeout"] = handshake_timeout
    server: SrpcServer[ClientMessage, ServerMessage] = SrpcServer(
        ClientMessage, ServerMessage, auth_secret=SECRET, **options
    )
    server.register_message_handler("uEcho", echo)
    server.register_connection_handler(on_connect)
    server.register_disconnect_handler(on_disconnect)
    await server.listen("127.0.0.1", 0)
    print(server.port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--nofile", type=int)
    parser.add_argument("--handshake-timeout", type=float)
    args = parser.parse_args()
    if args.nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    run(main(args.handshake_timeout))
