"""Out of descriptors, asyncio's accept error reaches the log once per interval, not per try.

Both standalone listeners (``websockets`` and ``picows``) run on asyncio's accept loop,
which meets ``EMFILE`` up to a hundred times a second while a flood lasts. Logged in
full, each with a traceback, that is megabytes of logs a minute; where stderr is a pipe
nobody reads fast enough, the writes block the event loop and the listener never gets
to accept again.
"""

from __future__ import annotations

import logging
import time

__all__ = ["ACCEPT_ERROR_LOG_INTERVAL", "AcceptErrorFilter", "install_accept_error_filter"]

ACCEPT_ERROR_LOG_INTERVAL = 10.0
"""Seconds between two reports of a listener out of descriptors (``EMFILE``)."""
_ACCEPT_ERROR = "socket.accept() out of system resource"


class AcceptErrorFilter(logging.Filter):
    """Lets asyncio's "out of system resource" report through once per interval.

    Out of descriptors, asyncio stops accepting for a second and retries, but reports
    every failed accept (up to a hundred a second, each with a traceback): 7.5 MB of
    logs in 25 s under a handshake flood. One line per interval says the same.
    """

    def __init__(self) -> None:
        super().__init__()
        self._next = 0.0
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str) or not record.msg.startswith(_ACCEPT_ERROR):
            return True
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return False
        exc = record.exc_info[1] if record.exc_info else None
        record.msg = (
            f"{_ACCEPT_ERROR} ({exc}): not accepting for a second at a time; "
            f"{self._suppressed} more since the last report, next report in "
            f"{ACCEPT_ERROR_LOG_INTERVAL:g} s at the earliest"
        )
        record.args = None
        record.exc_info = None
        record.exc_text = None
        self._next = now + ACCEPT_ERROR_LOG_INTERVAL
        self._suppressed = 0
        return True


_accept_error_filter = AcceptErrorFilter()


def install_accept_error_filter() -> None:
    """Put the filter on asyncio's logger (idempotent: one for the process)."""
    logging.getLogger("asyncio").addFilter(_accept_error_filter)
