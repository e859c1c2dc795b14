"""pytest plugin: a private Redis server per test session, and fixtures to break it.

Enable it in your own app's tests with ``pytest -p meshsrpc.testing`` or
``pytest_plugins = ["meshsrpc.testing"]`` in ``conftest.py``.

Fixtures:
- ``redis_server`` (session): a running :class:`RedisServer` shared by the session;
- ``redis_server_factory``: start more private servers (each closed after the test),
  for tests that stop, kill, pause or restart Redis;
- ``mesh_prefix``: a key prefix unique to the test, so tests never see each other;
- ``redis_settings``: :class:`RedisSettings` for the session server with that prefix;
- ``memory_url``: a ``memory://<name>`` URL unique to the test;
- ``srpc_transport``: parametrized over the installed SRPC transports (``websockets``,
  ``picows``), it sets ``MESHSRPC_TRANSPORT`` for the test; make it autouse in a
  ``conftest.py`` to run that directory's tests on each transport.

:func:`loop_factories` returns event loop factories (asyncio, and uvloop when installed)
for pytest-asyncio's ``pytest_asyncio_loop_factories`` hook, to run tests on each loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import pytest

from .loops import loop_factory, uvloop_available
from .redis_server import RedisServer
from .settings import RedisSettings
from .srpc.transports.choice import TRANSPORT_ENV, picows_available

__all__ = [
    "RedisServer",
    "loop_factories",
    "memory_url",
    "mesh_prefix",
    "redis_server",
    "redis_server_factory",
    "redis_settings",
    "srpc_transport",
]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private Redis server for the whole test session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[[], RedisServer]]:
    """Start extra private servers; every one is closed when the test ends."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer().start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def mesh_prefix() -> str:
    """A key prefix unique to this test."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_settings(redis_server: RedisServer, mesh_prefix: str) -> RedisSettings:
    """Settings for the session's Redis server, with this test's own key prefix."""
    if not redis_server.running:
        redis_server.start()
    return RedisSettings(url=redis_server.url, prefix=mesh_prefix)


@pytest.fixture
def memory_url() -> str:
    """A ``memory://`` URL naming an in-process mesh of this test's own."""
    return f"memory://t{uuid.uuid4().hex[:12]}"


_TRANSPORTS = ["websockets", *(["picows"] if picows_available() else [])]


@pytest.fixture(params=_TRANSPORTS)
def srpc_transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each installed SRPC transport in turn, set as ``MESHSRPC_TRANSPORT`` for the test."""
    name = str(request.param)
    monkeypatch.setenv(TRANSPORT_ENV, name)
    return name


def loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Event loop factories by name: ``asyncio``, and ``uvloop`` when it is installed."""
    factories = {"asyncio": asyncio.new_event_loop}
    if uvloop_available():
        factories["uvloop"] = loop_factory(uvloop=True)
    return factories
