"""The demo's output: timestamped lines per node, sections, a progress line and a table."""

from __future__ import annotations

import time
from typing import Any, TextIO

__all__ = ["Transcript", "fmt_meta", "ms"]

INDENT = " " * 10


class Transcript:
    """Aligned lines ``   1.23s  node3   text``, timed from the transcript's creation."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()
        self.tty = out.isatty()

    def line(self, where: str, text: str) -> None:
        """One event: when (since the start), where (a node, a client), what."""
        self.write(f"{time.monotonic() - self.t0:7.2f}s  {where:<7} {text}\n")

    def section(self, title: str) -> None:
        """A heading for the next step."""
        self.write(f"\n== {title}\n")

    def progress(self, text: str, *, final: bool = False) -> None:
        """A status line: rewritten in place on a terminal, one line per call otherwise."""
        if self.tty:
            self.write(f"\r{INDENT}{text}\033[K" + ("\n" if final else ""))
        else:
            self.write(f"{INDENT}{text}\n")

    def table(self, rows: list[tuple[str, ...]]) -> None:
        """Rows of cells in aligned columns; the first row is the header."""
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        self.write("\n")
        for row in rows:
            cells = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.write(f"{INDENT}{cells.rstrip()}\n")

    def write(self, text: str) -> None:
        """Raw text, flushed at once (the demo is watched live)."""
        self.out.write(text)
        self.out.flush()


def ms(seconds: float) -> str:
    """``0.0123`` → ``"12.3 ms"``."""
    return f"{seconds * 1000:.1f} ms"


def fmt_meta(meta: dict[str, Any] | None) -> str:
    """Metadata as ``{key=value, ...}``, keys sorted."""
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted((meta or {}).items())) + "}"
