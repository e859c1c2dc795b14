"""Summarise py-spy "raw" profiles: ``python -m bench.hotspots <dir or file>...``.

Prints, per profile, the functions with the most samples on the stack (inclusive)
and at the top of it (self), so the hot spots in meshsrpc's own code stand out.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def summarise(path: Path, top: int = 25, only: str = "") -> str:
    """The hot-spot table of one raw profile."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = busy = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        if any(marker in leaf for marker in ("select (selectors.py", "poll (selectors.py")):
            continue  # the event loop waiting for I/O: idle
        if "_find_and_load" in stack:
            continue  # start-up imports, not the measured path
        busy += count
        own[leaf] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"== {path.name}: {total} samples, {busy} busy ({busy / max(total, 1):.0%})"]
    lines.append("-- inclusive (share of busy samples)")
    for frame, count in inclusive.most_common(400):
        if only and only not in frame:
            continue
        lines.append(f"{count / max(busy, 1):6.1%}  {frame}")
        if len(lines) > top + 2:
            break
    lines.append("-- self")
    for frame, count in own.most_common(top):
        lines.append(f"{count / max(busy, 1):6.1%}  {frame}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Summarise every .txt profile under the given paths."""
    only = ""
    if argv and argv[0].startswith("--only="):
        only, argv = argv[0].split("=", 1)[1], argv[1:]
    for arg in argv:
        target = Path(arg)
        for path in sorted(target.glob("*.txt")) if target.is_dir() else [target]:
            print(summarise(path, only=only))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
