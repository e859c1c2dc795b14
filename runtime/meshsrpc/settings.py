"""Where Redis is: explicit settings, a URL, or the environment (MESH_/REDIS_/MUTEX_ variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from .errors import RedisConfigurationError

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

__all__ = [
    "RedisLike",
    "RedisSettings",
    "create_redis_client",
    "create_redis_cluster_client",
    "redact_url",
    "resolve_redis_settings",
]

MEMORY_SCHEME = "memory://"
DEFAULT_PREFIX = "app"
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
ACCEPTED_SCHEMES = (
    "redis://, rediss://, unix:// or memory://<name> (redis+cluster://host:port,... for a cluster)"
)
_REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class RedisSettings:
    """Connection settings for one Redis (or Sentinel-managed) server.

    ``url`` wins over ``host``/``port``; ``sentinel_host`` selects Sentinel.
    A URL of ``memory://<name>`` selects the in-process engine. ``cluster=True`` (or a
    ``redis+cluster://host:port,host:port`` URL) selects a Redis Cluster, reached
    through ``host``/``port`` or the URL's seed nodes, with the Python-only cluster key
    layout (docs/cluster.md). ``prefix`` is the
    key prefix (``P`` in WIRE.md); None means: from the environment, else ``app``.
    ``source`` says where the settings came from (e.g. ``MESH_REDIS_URL``), for error
    messages. A URL that redis-py cannot use raises :class:`RedisConfigurationError`.
    """

    url: str | None = None
    host: str | None = None
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_host: str | None = None
    sentinel_port: int = 26379
    sentinel_name: str | None = None
    prefix: str | None = None
    source: str | None = field(default=None, compare=False)
    cluster: bool = False

    def __post_init__(self) -> None:
        if self.url is not None:
            _check_url(self.url, self.source)
            if _is_cluster_url(self.url):
                object.__setattr__(self, "cluster", True)
        if self.cluster and self.sentinel_host:
            raise RedisConfigurationError(
                f"Redis settings{self.origin()}: cluster and Sentinel exclude each other"
            )
        url = self.url
        if self.cluster and url is not None and url.startswith(("unix:", MEMORY_SCHEME)):
            raise RedisConfigurationError(
                f"Redis URL {redact_url(url)!r}{self.origin()} cannot name a cluster: "
                "use redis+cluster://host:port,..."
            )

    @property
    def is_cluster(self) -> bool:
        """True when this selects a Redis Cluster (cluster key layout, sharded pub/sub)."""
        return self.cluster and not self.is_memory

    def cluster_nodes(self) -> list[tuple[str, int]]:
        """The seed nodes (host, port) of a cluster: the URL's hosts, else host/port."""
        if self.url is not None and "://" in self.url:
            netloc = urlsplit(self.url).netloc.rpartition("@")[2]
            seeds = [_host_port(part) for part in netloc.split(",") if part]
            if seeds:
                return seeds
        return [(self.host or "127.0.0.1", self.port)]

    @property
    def is_memory(self) -> bool:
        """True when this selects the in-process ``memory://`` engine."""
        return self.url is not None and self.url.startswith(MEMORY_SCHEME)

    @property
    def memory_name(self) -> str:
        """The name of the in-process mesh for a ``memory://<name>`` URL."""
        if not self.is_memory or self.url is None:
            raise RedisConfigurationError(f"not a memory:// URL: {self.url!r}")
        return self.url[len(MEMORY_SCHEME) :] or "default"

    @property
    def key_prefix(self) -> str:
        """The resolved key prefix."""
        return self.prefix if self.prefix is not None else DEFAULT_PREFIX

    def describe(self) -> str:
        """A short, password-free description for logs and errors."""
        if self.is_memory:
            return f"{self.url} (in-process)"
        if self.url:
            return redact_url(self.url)
        if self.cluster:
            return f"Redis Cluster {self.host or '127.0.0.1'}:{self.port}"
        if self.sentinel_host:
            name = self.sentinel_name or "mymaster"
            return f"Sentinel {self.sentinel_host}:{self.sentinel_port}, master {name!r}"
        return f"redis://{self.host or '127.0.0.1'}:{self.port}/{self.db}"

    def origin(self) -> str:
        """`` (from VARIABLE)`` when the settings came from the environment, else empty."""
        return f" (from {self.source})" if self.source else ""

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, scope: str = "MESH"
    ) -> RedisSettings:
        """Resolve settings from the environment.

        Order: ``<scope>_REDIS_URL``, ``<scope>_REDIS_HOST``/``PORT``,
        ``<scope>_REDIS_SENTINEL_HOST``/``PORT``/``NAME``, then the same without the
        scope (``REDIS_URL``, ...). ``<scope>_REDIS_CLUSTER`` (or ``REDIS_CLUSTER``)
        = ``1``/``true``/``yes`` selects a cluster at that URL or host. Raises
        :class:`RedisConfigurationError` naming the variables when nothing is set.
        """
        env = os.environ if env is None else env
        prefix = _first(env, f"{scope}_REDIS_PREFIX", "REDIS_PREFIX")
        cluster_var = _first(env, f"{scope}_REDIS_CLUSTER", "REDIS_CLUSTER")
        cluster = (cluster_var or "").strip().lower() in ("1", "true", "yes", "on")
        for pre in (f"{scope}_", ""):
            found = _from_vars(env, pre, prefix)
            if found is not None:
                return replace(found, cluster=True) if cluster and not found.cluster else found
        raise RedisConfigurationError(
            "no Redis configured: pass redis=RedisSettings(...) or a URL, or set "
            f"{scope}_REDIS_URL (or {scope}_REDIS_HOST/{scope}_REDIS_PORT, or "
            f"{scope}_REDIS_SENTINEL_HOST/{scope}_REDIS_SENTINEL_PORT/"
            f"{scope}_REDIS_SENTINEL_NAME), or REDIS_URL / REDIS_HOST / REDIS_PORT; "
            "use memory://<name> for the in-process engine"
        )


RedisLike = RedisSettings | str | None


def resolve_redis_settings(
    redis: RedisLike, *, scope: str = "MESH", env: Mapping[str, str] | None = None
) -> RedisSettings:
    """Turn ``redis=`` arguments (settings, URL or None) into settings with a prefix."""
    env = os.environ if env is None else env
    if redis is None:
        return RedisSettings.from_env(env, scope=scope)
    settings = (
        RedisSettings(url=redis, source="the redis= argument") if isinstance(redis, str) else redis
    )
    if settings.prefix is None:
        env_prefix = _first(env, f"{scope}_REDIS_PREFIX", "REDIS_PREFIX")
        settings = replace(settings, prefix=env_prefix or DEFAULT_PREFIX)
    return settings


def create_redis_client(
    settings: RedisSettings, *, max_connections: int = 128, **kwargs: Any
) -> Redis:
    """Open a ``redis.asyncio`` client (hiredis parser when installed) for ``settings``.

    The pool blocks when all ``max_connections`` are busy instead of raising, as
    redis-py's default pool does: a burst of concurrent publishes must queue, not fail.
    """
    if settings.is_memory:
        raise RedisConfigurationError("memory:// has no Redis client")
    if settings.is_cluster:
        raise RedisConfigurationError(
            f"{settings.describe()} is a Redis Cluster: use create_redis_cluster_client"
        )
    try:
        return _create_redis_client(settings, max_connections, kwargs)
    except ValueError as exc:
        # What the URL check cannot see, e.g. a query option of the wrong type.
        raise RedisConfigurationError(
            f"invalid Redis settings {settings.describe()!r}{settings.origin()}: {exc}"
        ) from exc


def create_redis_cluster_client(
    settings: RedisSettings, *, max_connections: int = 128, **kwargs: Any
) -> RedisCluster:
    """Open a ``redis.asyncio.RedisCluster`` on the seed nodes of cluster ``settings``.

    It follows MOVED/ASK and refreshes its slot map after a failover; the per-node
    pools block when full rather than raise, as :func:`create_redis_client`'s.
    """
    from redis.asyncio import RedisCluster
    from redis.asyncio.cluster import ClusterNode

    if not settings.is_cluster:
        raise RedisConfigurationError(f"{settings.describe()} is not a cluster")
    options: dict[str, Any] = {"decode_responses": False, **kwargs}
    if settings.url is not None:
        parts = urlsplit(settings.url)
        user, _, password = parts.netloc.rpartition("@")[0].partition(":")
        options.setdefault("username", unquote(user) or None)
        options.setdefault("password", unquote(password) or None)
        if parts.scheme.lower().startswith("rediss"):
            options.setdefault("ssl", True)
    else:
        options.setdefault("username", settings.username)
        options.setdefault("password", settings.password)
    nodes = [ClusterNode(host, port) for host, port in settings.cluster_nodes()]
    try:
        return RedisCluster(startup_nodes=nodes, max_connections=max_connections, **options)
    except ValueError as exc:
        raise RedisConfigurationError(
            f"invalid Redis Cluster settings {settings.describe()!r}{settings.origin()}: {exc}"
        ) from exc


def _is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        return text, 6379
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise RedisConfigurationError(
            f"invalid cluster node {text!r}: port must be a number"
        ) from None


def _create_redis_client(
    settings: RedisSettings, max_connections: int, kwargs: dict[str, Any]
) -> Redis:
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.sentinel import Sentinel

    common: dict[str, Any] = {"decode_responses": False, **kwargs}
    if settings.sentinel_host:
        sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
            [(settings.sentinel_host, settings.sentinel_port)],
            username=settings.username,
            password=settings.password,
            db=settings.db,
            **common,
        )
        master: Redis = sentinel.master_for(settings.sentinel_name or "mymaster")
        return master
    pool_options: dict[str, Any] = {"max_connections": max_connections, "timeout": 20.0}
    if settings.url:
        pool = BlockingConnectionPool.from_url(settings.url, **pool_options, **common)
    else:
        pool = BlockingConnectionPool(
            host=settings.host or "127.0.0.1",
            port=settings.port,
            db=settings.db,
            username=settings.username,
            password=settings.password,
            **pool_options,
            **common,
        )
    return Redis.from_pool(pool)


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def _from_vars(env: Mapping[str, str], pre: str, prefix: str | None) -> RedisSettings | None:
    url = env.get(f"{pre}REDIS_URL")
    if url:
        return RedisSettings(url=url, prefix=prefix or DEFAULT_PREFIX, source=f"{pre}REDIS_URL")
    host = env.get(f"{pre}REDIS_HOST")
    if host:
        return RedisSettings(
            host=host,
            port=_int_var(env, f"{pre}REDIS_PORT", 6379),
            db=_int_var(env, f"{pre}REDIS_DB", 0),
            username=env.get(f"{pre}REDIS_USERNAME") or None,
            password=env.get(f"{pre}REDIS_PASSWORD") or None,
            prefix=prefix or DEFAULT_PREFIX,
            source=f"{pre}REDIS_HOST",
        )
    sentinel = env.get(f"{pre}REDIS_SENTINEL_HOST")
    if sentinel:
        return RedisSettings(
            sentinel_host=sentinel,
            sentinel_port=_int_var(env, f"{pre}REDIS_SENTINEL_PORT", 26379),
            sentinel_name=env.get(f"{pre}REDIS_SENTINEL_NAME") or "mymaster",
            password=env.get(f"{pre}REDIS_PASSWORD") or None,
            prefix=prefix or DEFAULT_PREFIX,
            source=f"{pre}REDIS_SENTINEL_HOST",
        )
    return None


def _int_var(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise RedisConfigurationError(f"{name}={value!r} is not a number") from None


def _check_url(url: str, source: str | None) -> None:
    """Raise RedisConfigurationError, naming the fix, for a URL redis-py cannot use."""
    origin = f" (from {source})" if source else ""
    shown = redact_url(url)
    if url.startswith(MEMORY_SCHEME):
        return
    if "://" not in url:
        if url.lower().startswith("memory:"):
            hint = f"; did you mean {MEMORY_SCHEME}{url.split(':', 1)[1].lstrip('/')}?"
        else:
            hint = f"; did you mean redis://{shown}?"
        raise RedisConfigurationError(
            f"Redis URL {shown!r}{origin} has no scheme: use {ACCEPTED_SCHEMES}{hint}"
        )
    scheme = url.split("://", 1)[0]
    if scheme.lower() in CLUSTER_SCHEMES:
        netloc = urlsplit(url).netloc.rpartition("@")[2]
        if not netloc:
            raise RedisConfigurationError(
                f"Redis Cluster URL {shown!r}{origin} names no node: "
                "use redis+cluster://host:port,host:port"
            )
        for part in netloc.split(","):
            if part:
                _host_port(part)
        return
    if scheme.lower() not in _REDIS_SCHEMES:
        raise RedisConfigurationError(
            f"Redis URL {shown!r}{origin} has the unknown scheme {scheme + '://'!r}: "
            f"use {ACCEPTED_SCHEMES}"
        )
    from redis.asyncio.connection import parse_url

    try:
        parse_url(url)
    except ValueError as exc:
        raise RedisConfigurationError(f"invalid Redis URL {shown!r}{origin}: {exc}") from None


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` query) masked."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" not in netloc and "password" not in parts.query:
        return url  # (urlunsplit would turn unix:///path into unix:/path)
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    query = parts.query
    if "password" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
