"""LeaderService: at most one holder per key, through a lock with a ttl that the holder renews.

Lock key ``<mutex prefix>:leader:<key>``, value a random UUID4 lock id (WIRE.md §1).
Non-leaders retry every ``retry_delay``; the leader renews every ``renewal_interval``
and loses leadership as soon as a renewal fails (the value changed, the key expired,
or Redis could not be reached), so two holders never overlap for longer than the
lock's ttl. The lock id is regenerated only after leadership was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

from ._tasks import cancel_and_wait, raise_if_cancelling
from .engine import LeaderLockEngine, open_leader_lock
from .keys import leader_lock_key
from .settings import DEFAULT_PREFIX, RedisLike, RedisSettings, resolve_redis_settings

__all__ = ["LeaderCallback", "LeaderOptions", "LeaderService", "resolve_leader_settings"]

logger = logging.getLogger("meshsrpc.leader")

#: A leadership callback: no arguments, sync or async.
LeaderCallback = Callable[[], Awaitable[None] | None]

_RELEASE_TIMEOUT = 2.0


@dataclass(frozen=True)
class LeaderOptions:
    """Tuning of a LeaderService, in seconds (MeshService's ``leader=`` argument)."""

    ttl: float = 30.0
    renewal_interval: float = 10.0
    retry_delay: float = 5.0

    @classmethod
    def for_node_ttl(cls, node_ttl: float) -> LeaderOptions:
        """Timings scaled to a mesh's ``node_ttl``: what MeshService uses for ``leader=None``.

        A crashed leader's lock expires within ``node_ttl`` and a survivor takes it
        within a third more, so every dead node (the leader too) is reported within
        about 2 x ``node_ttl`` of its crash, instead of the fixed 30 s lock ttl's wait.
        """
        return cls(ttl=node_ttl, renewal_interval=node_ttl / 3, retry_delay=node_ttl / 3)


def resolve_leader_settings(
    redis: RedisLike, env: Mapping[str, str] | None = None
) -> RedisSettings:
    """Settings of the leader lock.

    An explicit ``redis`` wins (its prefix too). Otherwise the connection comes from
    ``MUTEX_REDIS_*``, else ``MESH_REDIS_*``, else ``REDIS_*``, and the lock prefix
    from ``MUTEX_REDIS_PREFIX``, else ``REDIS_PREFIX``, else ``app``.
    """
    env = os.environ if env is None else env
    if redis is not None:
        return resolve_redis_settings(redis, scope="MUTEX", env=env)
    scope = "MUTEX"
    for candidate in ("MUTEX", "MESH"):
        if any(env.get(f"{candidate}_REDIS_{var}") for var in ("URL", "HOST", "SENTINEL_HOST")):
            scope = candidate
            break
    settings = RedisSettings.from_env(env, scope=scope)
    prefix = env.get("MUTEX_REDIS_PREFIX") or env.get("REDIS_PREFIX") or DEFAULT_PREFIX
    return replace(settings, prefix=prefix)


class LeaderService:
    """Elects one leader per ``key`` among every process that runs a LeaderService for it."""

    def __init__(
        self,
        key: str,
        *,
        ttl: float = 30.0,
        renewal_interval: float = 10.0,
        retry_delay: float = 5.0,
        redis: RedisLike = None,
    ) -> None:
        if ttl <= 0 or renewal_interval <= 0 or retry_delay <= 0:
            raise ValueError("ttl, renewal_interval and retry_delay must be positive")
        self.key = key
        self.options = LeaderOptions(ttl, renewal_interval, retry_delay)
        self._redis = redis
        self._is_leader = False
        self._acquiring = False
        self._lock_id = str(uuid.uuid4())
        self._lock_key = ""
        self._engine: LeaderLockEngine | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_became: LeaderCallback | None = None
        self._on_lost: LeaderCallback | None = None
        # Set once the first attempt after start() has an outcome (won, lost or failed).
        self._decided = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        """True while this instance holds the lock (as of its last acquire/renew)."""
        return self._is_leader

    @property
    def lock_key(self) -> str:
        """The Redis key of the lock (empty before the first start)."""
        return self._lock_key

    async def wait_first_attempt(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) for the first try after :meth:`start`.

        Returns :attr:`is_leader` then, e.g. to report a node's role once it started.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._decided.wait()
        return self._is_leader

    def set_became_leader_callback(self, callback: LeaderCallback | None) -> None:
        """Call ``callback`` each time this instance becomes the leader."""
        self._on_became = callback

    def set_lost_leader_callback(self, callback: LeaderCallback | None) -> None:
        """Call ``callback`` each time leadership is lost (not on :meth:`stop`)."""
        self._on_lost = callback

    def start(self) -> None:
        """Join the election (needs a running event loop); raises if already started."""
        if self._task is not None:
            raise RuntimeError(f"LeaderService {self.key!r} is already started")
        settings = resolve_leader_settings(self._redis)
        self._decided.clear()
        self._lock_key = leader_lock_key(settings.key_prefix, self.key)
        self._engine = open_leader_lock(settings)
        self._task = asyncio.get_running_loop().create_task(
            self._run(self._engine), name=f"meshsrpc-leader {self._lock_key}"
        )

    async def stop(self) -> None:
        """Leave the election: no more attempts, and the lock is released if ours.

        Idempotent and safe before :meth:`start`.
        """
        task, self._task = self._task, None
        engine, self._engine = self._engine, None
        # An acquire cut short by the cancel may still have taken the lock on the
        # server: release then too (compare-and-delete, harmless when not ours), or the
        # lock would outlive this node by its ttl.
        acquiring = self._acquiring
        if task is not None:
            await cancel_and_wait([task])
        if engine is None:
            return
        if self._is_leader or acquiring:
            self._is_leader = False
            try:
                async with asyncio.timeout(_RELEASE_TIMEOUT):
                    await engine.release(self._lock_key, self._lock_id)
            except Exception as exc:
                logger.warning("could not release leader lock %s: %s", self._lock_key, exc)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_RELEASE_TIMEOUT):
                await engine.aclose()

    async def _run(self, engine: LeaderLockEngine) -> None:
        ttl_ms = max(1, round(self.options.ttl * 1000))
        while True:
            if not self._is_leader:
                self._acquiring = True
                try:
                    acquired = await engine.acquire(self._lock_key, self._lock_id, ttl_ms)
                except Exception as exc:
                    raise_if_cancelling()
                    logger.warning("leader lock %s: acquire failed: %s", self._lock_key, exc)
                    acquired = False
                finally:
                    self._acquiring = False
                first = not self._decided.is_set()
                self._decided.set()
                if acquired:
                    self._is_leader = True
                    # The outcome of the first try is what a starting mesh node reports
                    # in its one start line; a later takeover is news of its own.
                    level = logging.DEBUG if first else logging.INFO
                    logger.log(level, "became leader for %s", self._lock_key)
                    await self._fire(self._on_became, "became-leader")
                    await asyncio.sleep(self.options.renewal_interval)
                else:
                    await asyncio.sleep(self.options.retry_delay)
                continue
            try:
                renewed = await engine.renew(self._lock_key, self._lock_id, ttl_ms)
            except Exception as exc:
                raise_if_cancelling()
                # Unknown whether the lock survives; giving it up is the safe side.
                logger.warning("leader lock %s: renew failed: %s", self._lock_key, exc)
                renewed = False
            if renewed:
                await asyncio.sleep(self.options.renewal_interval)
                continue
            self._is_leader = False
            self._lock_id = str(uuid.uuid4())
            logger.warning("lost leadership for %s", self._lock_key)
            await self._fire(self._on_lost, "lost-leader")
            await asyncio.sleep(self.options.retry_delay)

    async def _fire(self, callback: LeaderCallback | None, what: str) -> None:
        if callback is None:
            return
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except Exception:
            raise_if_cancelling()
            logger.exception("%s callback of %s failed", what, self._lock_key)
