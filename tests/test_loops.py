"""meshsrpc.loops: the uvloop switch (argument, else MESHSRPC_UVLOOP) and the gc freeze
switch (argument, else MESHSRPC_GC_FREEZE)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

import pytest
from meshsrpc import loops


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_run_is_plain_asyncio_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loops.UVLOOP_ENV, raising=False)
    assert loops.run(loop_module()) == "asyncio"


def test_run_uses_uvloop_when_the_environment_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loops.UVLOOP_ENV, "1")
    assert loops.run(loop_module()) == "uvloop"


def test_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loops.UVLOOP_ENV, "1")
    assert loops.run(loop_module(), uvloop=False) == "asyncio"


def test_missing_uvloop_falls_back_to_asyncio_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loops, "uvloop_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="meshsrpc.loops"):
        assert loops.run(loop_module(), uvloop=True) == "asyncio"
    assert "uvloop was asked for but is not installed" in caplog.text


# --- gc_freeze: the start-up objects out of the collector's reach -----------------------
# In a child process: a fresh interpreter like an app's, and the collection freeze_gc()
# makes first does not walk the heap of the whole test session.

FREEZE_COUNT = "from meshsrpc import loops; import gc\n"


def run_child(code: str, env: dict[str, str] | None = None) -> str:
    environ = {k: v for k, v in os.environ.items() if k != loops.GC_FREEZE_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", FREEZE_COUNT + code],
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


RUN_AND_COUNT = "async def count(): return gc.get_freeze_count()\n"


def test_run_freezes_nothing_by_default() -> None:
    assert run_child(RUN_AND_COUNT + "print(loops.run(count()))") == "0"


def test_run_freezes_the_start_up_objects_when_the_environment_asks() -> None:
    frozen = run_child(RUN_AND_COUNT + "print(loops.run(count()))", {loops.GC_FREEZE_ENV: "1"})
    assert int(frozen) > 0


def test_gc_freeze_argument_wins_over_the_environment() -> None:
    code = RUN_AND_COUNT + "print(loops.run(count(), gc_freeze=False))"
    assert run_child(code, {loops.GC_FREEZE_ENV: "1"}) == "0"


def test_freeze_gc_collects_start_up_garbage_before_freezing() -> None:
    # Frozen objects are never collected: a cycle must be gone before the freeze.
    code = (
        "import weakref\n"
        "class Cycle:\n"
        "    def __init__(self): self.me = self\n"
        "garbage = weakref.ref(Cycle())\n"
        "loops.freeze_gc()\n"
        "print(garbage() is None, gc.get_freeze_count() > 0)\n"
    )
    assert run_child(code) == "True True"
