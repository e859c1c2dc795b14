"""Fixtures for meshgen's tests: run from the repo root, run the CLI in-process."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from meshgen.cli import main
from meshgen_helpers import REPO, Run


@pytest.fixture
def in_repo() -> Iterator[Path]:
    """Run from the repo root, so that proto paths (and headers) match `make golden`."""
    previous = os.getcwd()
    os.chdir(REPO)
    try:
        yield REPO
    finally:
        os.chdir(previous)


@pytest.fixture
def meshgen(capsys: pytest.CaptureFixture[str], in_repo: Path) -> Callable[..., Run]:
    """meshgen(*args) runs the CLI in-process from the repo root and returns a Run."""

    def run(*args: str) -> Run:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run
