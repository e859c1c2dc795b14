"""Many deadlines on one event-loop timer.

A mesh node keeps a deadline per call in flight (a caller's timeout, a handler's next
request heartbeat) and almost every one is dropped long before it is due. One
``call_later`` each means a timer handle, a heap push and a cancelled handle left in
the loop's heap per call; here setting or dropping a deadline is a dict operation,
and the single timer is only moved when a deadline earlier than it is set.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

K = TypeVar("K", bound=Hashable)

# asyncio runs a timer up to its clock resolution early; such a key is due all the same.
_EARLY = 1e-6


class Deadlines(Generic[K]):
    """Calls ``on_due(key)`` once a key's deadline (loop time) has passed, unless the
    key was dropped or set again meanwhile. ``on_due`` may set and drop keys."""

    def __init__(self, on_due: Callable[[K], None]) -> None:
        self._on_due = on_due
        self._when: dict[K, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._when)

    def set(self, key: K, when: float) -> None:
        """(Re)set ``key``'s deadline to loop time ``when``; ValueError unless finite."""
        if not math.isfinite(when):
            # A NaN in the loop's timer heap breaks its ordering: other timers (a
            # node's heartbeat) may then never fire.
            raise ValueError(f"deadline must be a finite loop time, not {when!r}")
        self._when[key] = when
        timer = self._timer
        if timer is None or when < timer.when():
            self._arm(when)

    def discard(self, key: K) -> None:
        """Drop ``key``'s deadline, if any (the timer stays until it fires or is moved)."""
        self._when.pop(key, None)

    def clear(self) -> None:
        """Drop every deadline and the timer."""
        self._when.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        else:
            self._loop = asyncio.get_running_loop()
        assert self._loop is not None
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self._when:
            return
        assert self._loop is not None
        limit = self._loop.time() + _EARLY
        due = [key for key, when in self._when.items() if when <= limit]
        try:
            for key in due:
                # Skip a key that an earlier on_due dropped or moved to later.
                when = self._when.get(key)
                if when is not None and when <= limit:
                    del self._when[key]
                    self._on_due(key)
        finally:
            if self._when:
                earliest = min(self._when.values())
                if self._timer is None or earliest < self._timer.when():
                    self._arm(earliest)
