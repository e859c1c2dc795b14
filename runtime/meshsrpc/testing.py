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

Helpers your own tests need as much as ours:
- :func:`eventually`: wait for a condition (sync or async), bounded;
- :func:`lifecycle_settled`: wait until a server's queued registry writes and lifecycle
  callbacks have run, before asserting that something did *not* happen;
- :data:`FAST_MESH` / :data:`FAST_DYING_MESH`: short mesh timings (keyword arguments of
  ``MeshService``, ``MeshClientService`` and ``MeshSrpcServer``);
- :func:`spawn_child`: a node in a child process, to SIGKILL as a crash.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

from .leader import LeaderOptions
from .loops import loop_factory, uvloop_available
from .redis_cluster_server import RedisClusterServer
from .redis_server import RedisServer
from .settings import RedisSettings
from .srpc.transports.choice import TRANSPORT_ENV, picows_available

if TYPE_CHECKING:
    from .mesh_server import MeshSrpcServer

__all__ = [
    "FAST_DYING_MESH",
    "FAST_MESH",
    "ChildNode",
    "RedisClusterServer",
    "RedisServer",
    "child_env",
    "eventually",
    "lifecycle_settled",
    "loop_factories",
    "memory_url",
    "mesh_prefix",
    "redis_cluster",
    "redis_cluster_factory",
    "redis_cluster_settings",
    "redis_server",
    "redis_server_factory",
    "redis_settings",
    "spawn_child",
    "srpc_transport",
]

#: Short mesh timings that keep tests fast. The node TTL stays generous, so a loaded CI
#: box never declares a live node dead.
FAST_MESH: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "node_ttl": 3.0,
    "request_timeout": 2.0,
    "leader": LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
}
#: For tests about dead nodes: a node that stops heartbeating is gone within a second.
FAST_DYING_MESH: dict[str, Any] = {**FAST_MESH, "heartbeat_interval": 0.1, "node_ttl": 0.6}


async def eventually(
    predicate: Callable[[], Any], timeout: float = 5.0, *, interval: float = 0.01
) -> None:
    """Wait until ``predicate()`` (sync or async) is truthy; AssertionError after ``timeout`` s.

    For state the code under test owns and exposes no event for.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def lifecycle_settled(server: MeshSrpcServer[Any, Any, Any], timeout: float = 5.0) -> None:
    """Wait until the registry writes and lifecycle callbacks ``server`` queued so far have run.

    Wait on this, not a sleep, before asserting that a callback did *not* happen (a
    stream's release is queued once it left ``streams_by_id``).
    """
    await asyncio.sleep(0)  # stream.meta syncs run one loop turn after the change
    await server._mesh.drain(timeout)


def child_env(*paths: str | Path) -> dict[str, str]:
    """This process's environment with ``paths`` first on ``PYTHONPATH`` (for a child node)."""
    env = dict(os.environ)
    entries = [str(path) for path in paths]
    if env.get("PYTHONPATH"):
        entries.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(entries)
    return env


class ChildNode:
    """A node in a child Python process; :attr:`ready_line` is the first line it printed."""

    def __init__(self, process: asyncio.subprocess.Process, ready_line: str) -> None:
        self.process = process
        self.ready_line = ready_line

    @property
    def alive(self) -> bool:
        """True until the process has exited (and been waited for)."""
        return self.process.returncode is None

    def kill(self) -> None:
        """SIGKILL: a crash, no chance to clean up."""
        if self.alive:
            self.process.kill()

    async def aclose(self) -> None:
        """Kill it if still running and reap it."""
        self.kill()
        await self.process.wait()


async def spawn_child(
    *args: str,
    cwd: str | Path | None = None,
    ready_timeout: float = 30.0,
    stderr: int | IO[Any] | None = None,
) -> ChildNode:
    """Run ``python *args`` (a script or ``-m module``, then its arguments) with ``cwd`` first
    on ``PYTHONPATH``; return once it printed its first line (it is ready)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        env=child_env(cwd) if cwd is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), ready_timeout)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    if not line:
        await process.wait()
        raise RuntimeError(f"child {args!r} exited before it was ready")
    return ChildNode(process, line.decode().strip())


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
