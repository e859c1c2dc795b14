"""DrainMoves alone: did a client a draining node sent away reappear on another node?"""

from __future__ import annotations

import asyncio

import pytest
from meshsrpc import moves as moves_module
from meshsrpc.moves import DrainMoves

pytestmark = pytest.mark.timeout(10)

HERE = 1


class Registry:
    """The owner lookup: answers ``owner`` and counts the lookups."""

    def __init__(self, owner: int | None) -> None:
        self.owner = owner
        self.lookups = 0
        self.looked_up = asyncio.Event()

    async def __call__(self, client_id: str) -> int | None:
        self.lookups += 1
        self.looked_up.set()
        return self.owner


async def test_without_a_drain_nothing_moved_and_nothing_is_looked_up() -> None:
    registry = Registry(owner=2)
    assert not await DrainMoves().moved("c1", HERE, registry)
    assert registry.lookups == 0


async def test_a_client_registered_on_another_node_moved() -> None:
    moves = DrainMoves()
    moves.grace = 5.0
    assert await moves.moved("c1", HERE, Registry(owner=2))


async def test_a_client_still_registered_here_when_the_grace_ends_did_not_move() -> None:
    moves = DrainMoves()
    moves.grace = 0.0
    assert not await moves.moved("c1", HERE, Registry(owner=HERE))


async def test_a_failed_lookup_counts_as_not_moved_yet() -> None:
    async def broken(client_id: str) -> int | None:
        raise ConnectionError("Redis down")

    moves = DrainMoves()
    moves.grace = 0.0
    assert not await moves.moved("c1", HERE, broken)


async def test_the_new_nodes_kick_wakes_the_wait_to_look_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No periodic lookup within the test's bounds: only the kick can wake the wait.
    monkeypatch.setattr(moves_module, "POLL_INTERVAL", 60.0)
    moves = DrainMoves()
    moves.grace = 60.0
    registry = Registry(owner=None)
    waiting = asyncio.create_task(moves.moved("c1", HERE, registry))
    await registry.looked_up.wait()
    registry.owner = 2
    moves.arrived("c1")
    async with asyncio.timeout(5):
        assert await waiting
    assert registry.lookups == 2
