"""Request and stream ids: time-ordered UUIDv7 strings, like the TypeScript peer uses."""

from __future__ import annotations

import os
import threading
import time

__all__ = ["uuid7"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Random bits from os.urandom, drawn 4 KB at a time: one system call per 400 ids, not
# one or two per id (a cross-node call makes an id on each node it passes).
_POOL_SIZE = 4000
_pool = b""
_pool_pos = _POOL_SIZE


def uuid7() -> str:
    """Return a new RFC 9562 UUIDv7 as a lowercase hyphenated string.

    Python 3.11 has no ``uuid.uuid7``. Ids made in the same millisecond stay ordered
    through a 12-bit counter in ``rand_a`` seeded randomly each millisecond.
    """
    global _last_ms, _counter, _pool, _pool_pos
    with _lock:
        if _pool_pos >= _POOL_SIZE:
            _pool, _pool_pos = os.urandom(_POOL_SIZE), 0
        pos = _pool_pos
        _pool_pos = pos + 10  # 8 bytes for rand_b, 2 for a new millisecond's counter
        random = int.from_bytes(_pool[pos : pos + 8], "big")
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(_pool[pos + 8 : pos + 10], "big") & 0x7FF
        else:
            # Same (or earlier: clock stepped back) millisecond: keep counting on the last one.
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
    rand_b = random & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
