"""meshsrpc.loops: the one uvloop switch (argument, else MESHSRPC_UVLOOP)."""

from __future__ import annotations

import asyncio
import logging

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
