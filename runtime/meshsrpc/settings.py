"""Where Redis is: explicit settings, a URL, or the environment (MESH_/REDIS_/MUTEX_ variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .errors import RedisConfigurationError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisLike", "RedisSettings", "create_redis_client", "resolve_redis_settings"]

MEMORY_SCHEME = "memory://"
DEFAULT_PREFIX = "app"


@dataclass(frozen=True)
class RedisSettings:
    """Connection settings for one Redis (or Sentinel-managed) server.

    ``url`` wins over ``host``/``port``; ``sentinel_host`` selects Sentinel.
    A URL of ``memory://<name>`` selects the in-process engine. ``prefix`` is the
    key prefix (``P`` in WIRE.md); None means: from the environment, else ``app``.
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
        if self.url:
            return _redact(self.url)
        if self.sentinel_host:
            return f"sentinel {self.sentinel_host}:{self.sentinel_port}/{self.sentinel_name}"
        return f"redis://{self.host}:{self.port}/{self.db}"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, scope: str = "MESH"
    ) -> RedisSettings:
        """Resolve settings from the environment.

        Order: ``<scope>_REDIS_URL``, ``<scope>_REDIS_HOST``/``PORT``,
        ``<scope>_REDIS_SENTINEL_HOST``/``PORT``/``NAME``, then the same without the
        scope (``REDIS_URL``, ...). Raises :class:`RedisConfigurationError` naming the
        variables when nothing is set.
        """
        env = os.environ if env is None else env
        prefix = _first(env, f"{scope}_REDIS_PREFIX", "REDIS_PREFIX")
        for pre in (f"{scope}_", ""):
            found = _from_vars(env, pre, prefix)
            if found is not None:
                return found
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
    settings = RedisSettings(url=redis) if isinstance(redis, str) else redis
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
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.sentinel import Sentinel

    if settings.is_memory:
        raise RedisConfigurationError("memory:// has no Redis client")
    common: dict[str, Any] = {"decode_responses": False, **kwargs}
    if settings.sentinel_host:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
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
        return RedisSettings(url=url, prefix=prefix or DEFAULT_PREFIX)
    host = env.get(f"{pre}REDIS_HOST")
    if host:
        return RedisSettings(
            host=host,
            port=int(env.get(f"{pre}REDIS_PORT") or 6379),
            db=int(env.get(f"{pre}REDIS_DB") or 0),
            username=env.get(f"{pre}REDIS_USERNAME") or None,
            password=env.get(f"{pre}REDIS_PASSWORD") or None,
            prefix=prefix or DEFAULT_PREFIX,
        )
    sentinel = env.get(f"{pre}REDIS_SENTINEL_HOST")
    if sentinel:
        return RedisSettings(
            sentinel_host=sentinel,
            sentinel_port=int(env.get(f"{pre}REDIS_SENTINEL_PORT") or 26379),
            sentinel_name=env.get(f"{pre}REDIS_SENTINEL_NAME") or "mymaster",
            password=env.get(f"{pre}REDIS_PASSWORD") or None,
            prefix=prefix or DEFAULT_PREFIX,
        )
    return None


def _redact(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
