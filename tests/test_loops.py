"""meshsrpc.loops: the uvloop switch (argument, else MESHSRPC_UVLOOP) and the gc freeze
switch (argument, else MESHSRPC_GC_FREEZE)."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Iterator

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


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever a test freezes goes back to the collector afterwards."""
    gc.unfreeze()
    yield
    gc.unfreeze()


async def freeze_count() -> int:
    return gc.get_freeze_count()


def test_run_freezes_nothing_by_default(monkeypatch: pytest.MonkeyPatch, unfrozen: None) -> None:
    monkeypatch.delenv(loops.GC_FREEZE_ENV, raising=False)
    assert loops.run(freeze_count()) == 0


def test_run_freezes_the_start_up_objects_when_the_environment_asks(
    monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    monkeypatch.setenv(loops.GC_FREEZE_ENV, "1")
    assert loops.run(freeze_count()) > 0


def test_gc_freeze_argument_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    monkeypatch.setenv(loops.GC_FREEZE_ENV, "1")
    assert loops.run(freeze_count(), gc_freeze=False) == 0


def test_freeze_gc_collects_start_up_garbage_before_freezing(unfrozen: None) -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    garbage = weakref.ref(Cycle())
    loops.freeze_gc()
    # Frozen objects are never collected: the cycle must have gone before the freeze.
    assert garbage() is None
    assert gc.get_freeze_count() > 0
