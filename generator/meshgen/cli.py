"""The ``meshgen`` command line."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point; replaced by the real CLI in issue 5."""
    print("meshgen: not built yet")
    return 2
