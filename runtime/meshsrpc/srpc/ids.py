"""Request and stream ids: time-ordered UUIDv7 strings, like the TypeScript peer uses."""

from __future__ import annotations

import os
import threading
import time

__all__ = ["uuid7"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> str:
    """Return a new RFC 9562 UUIDv7 as a lowercase hyphenated string.

    Python 3.11 has no ``uuid.uuid7``. Ids made in the same millisecond stay ordered
    through a 12-bit counter in ``rand_a`` seeded randomly each millisecond.
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            # Same (or earlier: clock stepped back) millisecond: keep counting on the last one.
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
