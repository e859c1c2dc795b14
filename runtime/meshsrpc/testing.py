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

- ``redis_cluster`` (session): a local :class:`RedisClusterServer` (3 primaries, 3
  replicas) shared by the session; ``redis_cluster_settings``: settings for it with
  the test's prefix; ``redis_cluster_factory``: private clusters (closed after the
  test), for tests that kill a primary.

``pytest --redis-cluster`` makes ``redis_settings`` point at the session's cluster, so
a whole Redis suite runs against a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import pytest

from .loops import loop_factory, uvloop_available
from .redis_cluster_server import RedisClusterServer
from .redis_server import RedisServer
from .settings import RedisSettings
from .srpc.transports.choice import TRANSPORT_ENV, picows_available

__all__ = [
    "RedisClusterServer",
    "RedisServer",
    "loop_factories",
    "memory_url",
    "mesh_prefix",
    "redis_cluster",
    "redis_cluster_factory",
    "redis_cluster_settings",
    "redis_server",
    "redis_server_factory",
    "redis_settings",
    "srpc_transport",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--redis-cluster``: ``redis_settings`` selects the session's local cluster."""
    parser.addoption(
        "--redis-cluster",
        action="store_true",
        default=False,
        help="run tests using redis_settings against a local Redis Cluster",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the markers of cluster runs."""
    config.addinivalue_line("markers", "cluster: runs against a local Redis Cluster")
    config.addinivalue_line(
        "markers", "cluster_suite: a whole suite's run against a Redis Cluster (make test-cluster)"
    )
    config.addinivalue_line(
        "markers", "single_instance: checks the single-instance key layout itself"
    )


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


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServer]:
    """A private local Redis Cluster (3 primaries + 3 replicas) for the whole session."""
    with RedisClusterServer() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_factory() -> Iterator[Callable[[], RedisClusterServer]]:
    """Start private clusters (e.g. to kill a primary); each is closed when the test ends."""
    clusters: list[RedisClusterServer] = []

    def start() -> RedisClusterServer:
        cluster = RedisClusterServer()
        clusters.append(cluster)
        return cluster.start()

    yield start
    for cluster in clusters:
        cluster.close()


@pytest.fixture
def redis_cluster_settings(redis_cluster: RedisClusterServer, mesh_prefix: str) -> RedisSettings:
    """Settings for the session's cluster, with this test's own key prefix."""
    return RedisSettings(url=redis_cluster.url, prefix=mesh_prefix)


@pytest.fixture
def redis_settings(request: pytest.FixtureRequest, mesh_prefix: str) -> RedisSettings:
    """Settings for the session's Redis server (its cluster with ``--redis-cluster``),
    with this test's own key prefix."""
    if request.config.getoption("--redis-cluster", default=False):
        cluster: RedisClusterServer = request.getfixturevalue("redis_cluster")
        return RedisSettings(url=cluster.url, prefix=mesh_prefix)
    redis_server: RedisServer = request.getfixturevalue("redis_server")
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
