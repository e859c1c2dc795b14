"""ruff, run the same way wherever meshgen runs, so that output bytes never depend on the folder."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys

from .problems import MeshgenError, Problem


def ruff_binary() -> str:
    """The ruff executable installed with meshgen's `gen` extra (else the one on PATH)."""
    try:
        # ruff ships no type information; find_ruff_bin() -> str | bytes path.
        finder = importlib.import_module("ruff.__main__").find_ruff_bin
        return os.fsdecode(finder())
    except (ImportError, AttributeError, FileNotFoundError):
        found = shutil.which("ruff")
        if found is None:
            raise MeshgenError([Problem("meshgen", 0, "ruff is not installed")]) from None
        return found


def format_python(code: str, name: str) -> str:
    """Format code with ruff's defaults, ignoring any ruff config around us (--isolated)."""
    result = subprocess.run(
        [ruff_binary(), "format", "--isolated", "-"],
        input=code,
        capture_output=True,
        encoding="utf-8",
        check=False,
    )
    if result.returncode != 0:
        # A template bug, not a user error: show what ruff saw.
        print(code, file=sys.stderr)
        raise RuntimeError(f"ruff could not format the generated {name}: {result.stderr}")
    return result.stdout
