"""The registry contract (API.md "Client registry", WIRE.md §2), for every backend."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
from meshsrpc import ClientConflictError
from registry_fixtures import Nodes


def _ms() -> int:
    return time.time_ns() // 1_000_000


async def test_register_and_get_with_connected_at(nodes: Nodes) -> None:
    before = _ms()
    assert await nodes.one.register("c1", {"userId": "u1"}) is None
    client = await nodes.two.get_client("c1")
    assert client is not None
    assert (client.client_id, client.node_id, client.metadata) == ("c1", 1, {"userId": "u1"})
    assert before <= client.connected_at <= _ms()
    assert isinstance(client.connected_at, int)


async def test_none_metadata_round_trips(nodes: Nodes) -> None:
    await nodes.one.register("c1", None)
    client = await nodes.one.get_client("c1")
    assert client is not None and client.metadata is None


async def test_metadata_round_trips_exactly(nodes: Nodes) -> None:
    metadata = {
        "z": 1,
        "a": "b",
        "empty": [],
        "emptyObj": {},
        "tags": ["x"],
        "path": "/p/q",
        "big": 12345678901234567,
        "ratio": 0.5,
        "nul": None,
        "note": 'a "q" é',
    }
    await nodes.one.register("c1", metadata)
    client = await nodes.one.get_client("c1")
    assert client is not None
    assert client.metadata == metadata
    assert list(client.metadata) == list(metadata)


async def test_stored_metadata_is_a_copy(nodes: Nodes) -> None:
    metadata: dict[str, Any] = {"tags": ["x"]}
    await nodes.one.register("c1", metadata)
    metadata["tags"].append("changed")
    first = await nodes.one.get_client("c1")
    assert first is not None
    first.metadata["tags"].append("changed again")
    again = await nodes.one.get_client("c1")
    assert again is not None and again.metadata == {"tags": ["x"]}


async def test_get_unknown_client_is_none(nodes: Nodes) -> None:
    assert await nodes.one.get_client("nobody") is None


async def test_list_all(nodes: Nodes) -> None:
    await nodes.one.register("a", {"n": 1})
    await nodes.two.register("b", {"n": 2})
    listed = {c.client_id: (c.node_id, c.metadata) for c in await nodes.one.list_clients()}
    assert listed == {"a": (1, {"n": 1}), "b": (2, {"n": 2})}


async def test_list_per_node(nodes: Nodes) -> None:
    await nodes.one.register("a", None)
    await nodes.two.register("b", None)
    await nodes.two.register("c", None)
    assert {c.client_id for c in await nodes.one.list_clients_for_node(2)} == {"b", "c"}
    assert {c.client_id for c in await nodes.two.list_clients_for_node(1)} == {"a"}


async def test_list_for_own_node_by_default(nodes: Nodes) -> None:
    await nodes.one.register("a", None)
    await nodes.two.register("b", None)
    assert [c.client_id for c in await nodes.two.list_clients_for_node()] == ["b"]


async def test_unregister_true_when_owned(nodes: Nodes) -> None:
    await nodes.one.register("c1", None)
    assert await nodes.one.unregister("c1") is True
    assert await nodes.one.get_client("c1") is None
    assert await nodes.one.list_clients_for_node() == []


async def test_unregister_false_when_absent(nodes: Nodes) -> None:
    assert await nodes.one.unregister("nobody") is False


async def test_unregister_false_when_the_client_moved(nodes: Nodes) -> None:
    await nodes.one.register("c1", None)
    await nodes.two.register("c1", None)
    assert await nodes.one.unregister("c1") is False
    client = await nodes.one.get_client("c1")
    assert client is not None and client.node_id == 2


async def test_cross_node_reconnect_moves_the_client_and_returns_the_old_node(
    nodes: Nodes,
) -> None:
    await nodes.one.register("c1", {"v": 1})
    assert await nodes.two.register("c1", {"v": 2}) == 1
    client = await nodes.one.get_client("c1")
    assert client is not None and (client.node_id, client.metadata) == (2, {"v": 2})
    assert await nodes.one.list_clients_for_node() == []
    assert [c.client_id for c in await nodes.two.list_clients_for_node()] == ["c1"]
    assert [c.client_id for c in await nodes.one.list_clients()] == ["c1"]


async def test_same_node_reregister_returns_none_and_updates_metadata(nodes: Nodes) -> None:
    await nodes.one.register("c1", {"v": 1})
    assert await nodes.one.register("c1", {"v": 2}) is None
    client = await nodes.one.get_client("c1")
    assert client is not None and (client.node_id, client.metadata) == (1, {"v": 2})
    assert [c.client_id for c in await nodes.one.list_clients_for_node()] == ["c1"]


async def test_no_supersede_raises_conflict_for_another_owner_and_changes_nothing(
    nodes: Nodes,
) -> None:
    await nodes.one.register("c1", {"v": 1})
    with pytest.raises(ClientConflictError) as caught:
        await nodes.two.register("c1", {"v": 2}, allow_supersede=False)
    assert (caught.value.client_id, caught.value.owner_node_id) == ("c1", 1)
    client = await nodes.one.get_client("c1")
    assert client is not None and (client.node_id, client.metadata) == (1, {"v": 1})
    assert await nodes.two.list_clients_for_node() == []


async def test_no_supersede_succeeds_for_a_new_client_and_the_same_node(nodes: Nodes) -> None:
    assert await nodes.one.register("c1", {"v": 1}, allow_supersede=False) is None
    assert await nodes.one.register("c1", {"v": 2}, allow_supersede=False) is None
    client = await nodes.one.get_client("c1")
    assert client is not None and client.metadata == {"v": 2}


async def test_cleanup_node_removes_only_clients_it_still_owns(nodes: Nodes) -> None:
    await nodes.one.register("stays-1", {"m": "a"})
    await nodes.one.register("stays-2", None)
    await nodes.one.register("moved", {"m": "b"})
    await nodes.two.register("moved", {"m": "c"})
    await nodes.two.register("other", None)
    removed = await nodes.two.cleanup_node(1)
    assert {(c.client_id, c.node_id) for c in removed} == {("stays-1", 1), ("stays-2", 1)}
    assert {c.client_id: c.metadata for c in removed} == {"stays-1": {"m": "a"}, "stays-2": None}
    assert {c.client_id for c in await nodes.two.list_clients()} == {"moved", "other"}
    assert await nodes.two.list_clients_for_node(1) == []
    assert await nodes.two.cleanup_node(1) == []


async def test_cleanup_of_own_node_by_default(nodes: Nodes) -> None:
    await nodes.one.register("a", None)
    await nodes.two.register("b", None)
    assert [c.client_id for c in await nodes.one.cleanup_node()] == ["a"]
    assert [c.client_id for c in await nodes.one.list_clients()] == ["b"]


async def test_cleanup_of_an_empty_or_unknown_node_returns_nothing(nodes: Nodes) -> None:
    await nodes.one.register("a", None)
    await nodes.one.unregister("a")
    assert await nodes.two.cleanup_node(1) == []
    assert await nodes.two.cleanup_node(987654) == []


async def test_update_metadata_true_when_owned_and_connected_at_kept(nodes: Nodes) -> None:
    await nodes.one.register("c1", {"v": 1})
    before = await nodes.one.get_client("c1")
    await asyncio.sleep(0.01)
    assert await nodes.one.update_metadata("c1", {"v": 2, "tags": []}) is True
    after = await nodes.two.get_client("c1")
    assert before is not None and after is not None
    assert after.metadata == {"v": 2, "tags": []}
    assert (after.node_id, after.connected_at) == (1, before.connected_at)
    listed = await nodes.two.list_clients()
    assert [(c.connected_at, c.metadata) for c in listed] == [(before.connected_at, after.metadata)]


async def test_update_metadata_to_none(nodes: Nodes) -> None:
    await nodes.one.register("c1", {"v": 1})
    assert await nodes.one.update_metadata("c1", None) is True
    client = await nodes.one.get_client("c1")
    assert client is not None and client.metadata is None


async def test_update_metadata_false_when_moved_or_absent(nodes: Nodes) -> None:
    await nodes.one.register("c1", {"v": 1})
    await nodes.two.register("c1", {"v": 2})
    assert await nodes.one.update_metadata("c1", {"v": 3}) is False
    assert await nodes.one.update_metadata("nobody", {"v": 3}) is False
    client = await nodes.one.get_client("c1")
    assert client is not None and client.metadata == {"v": 2}
    assert await nodes.one.get_client("nobody") is None


async def test_reserve_hides_the_client_until_activate(nodes: Nodes) -> None:
    assert await nodes.one.reserve("c1", {"v": 1}) is None
    assert await nodes.two.get_client("c1") is None
    assert await nodes.two.list_clients() == []
    assert await nodes.two.list_clients_for_node(1) == []
    assert await nodes.one.activate("c1", {"v": 2}) is True
    client = await nodes.two.get_client("c1")
    assert client is not None and (client.node_id, client.metadata) == (1, {"v": 2})
    assert [c.client_id for c in await nodes.two.list_clients_for_node(1)] == ["c1"]


async def test_reserve_supersedes_like_register(nodes: Nodes) -> None:
    await nodes.one.register("c1", None)
    old = await nodes.two.reserve("c1", None)
    old = old if nodes.two.supports_reservation else await nodes.two.register_reserved("c1", None)
    assert old == 1
    if nodes.two.supports_reservation:
        # The reservation already took the client from node 1, though it is hidden.
        assert await nodes.one.get_client("c1") is None
        assert await nodes.two.activate("c1", None) is True
    client = await nodes.one.get_client("c1")
    assert client is not None and client.node_id == 2


async def test_reserve_without_supersede_refuses_another_owner(nodes: Nodes) -> None:
    await nodes.one.register("c1", {"v": 1})
    with pytest.raises(ClientConflictError):
        # Backends with reservations refuse at reserve, the fallback at activation.
        await nodes.two.reserve("c1", {"v": 2}, allow_supersede=False)
        await nodes.two.activate("c1", {"v": 2})
    client = await nodes.one.get_client("c1")
    assert client is not None and (client.node_id, client.metadata) == (1, {"v": 1})


async def test_activate_false_once_another_node_took_the_reservation(nodes: Nodes) -> None:
    await nodes.one.reserve("c1", None)
    await nodes.one.activate("c1", None)
    await nodes.two.register("c1", None)
    if nodes.one.supports_reservation:
        assert await nodes.one.activate("c1", None) is False
        client = await nodes.one.get_client("c1")
        assert client is not None and client.node_id == 2
    else:
        # Without reservations, activating is registering: the newest connection wins.
        assert await nodes.one.activate("c1", None) is True


async def test_unregister_removes_a_reservation(nodes: Nodes) -> None:
    await nodes.one.reserve("c1", None)
    await nodes.one.unregister("c1")
    await nodes.one.activate("c1", None)
    if nodes.one.supports_reservation:
        assert await nodes.one.get_client("c1") is None


async def test_200_concurrent_registrations_all_land(nodes: Nodes) -> None:
    registries = [nodes.one, nodes.two]
    await asyncio.gather(*(registries[i % 2].register(f"c{i}", {"i": i}) for i in range(200)))
    listed = {c.client_id: c for c in await nodes.one.list_clients()}
    assert len(listed) == 200
    assert all(listed[f"c{i}"].metadata == {"i": i} for i in range(200))
    assert len(await nodes.one.list_clients_for_node(1)) == 100
    assert len(await nodes.one.list_clients_for_node(2)) == 100


@pytest.mark.parametrize(
    "bad",
    [object(), {"x": float("nan")}, {"s": {1, 2}}, {"f": math.inf}],
    ids=["object", "nan", "set", "inf"],
)
async def test_non_serialisable_metadata_raises_type_error_and_writes_nothing(
    nodes: Nodes, bad: object
) -> None:
    with pytest.raises(TypeError, match="JSON-serialisable"):
        await nodes.one.register("c1", bad)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        await nodes.one.reserve("c1", bad)
        await nodes.one.activate("c1", bad)
    assert await nodes.one.get_client("c1") is None
    assert await nodes.one.list_clients() == []
    await nodes.one.register("c2", {"ok": True})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        await nodes.one.update_metadata("c2", bad)
    client = await nodes.one.get_client("c2")
    assert client is not None and client.metadata == {"ok": True}


async def test_circular_metadata_raises_type_error(nodes: Nodes) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(TypeError, match="JSON-serialisable"):
        await nodes.one.register("c1", loop)
    assert await nodes.one.list_clients() == []


async def test_list_clients_is_correct_while_clients_churn(nodes: Nodes) -> None:
    stable = {f"stable-{i}" for i in range(600)}
    await asyncio.gather(*(nodes.one.register(c, {"s": 1}) for c in stable))
    stop = asyncio.Event()

    async def churn() -> None:
        n = 0
        while not stop.is_set():
            batch = [f"churn-{n}-{i}" for i in range(20)]
            await asyncio.gather(*(nodes.two.register(c, None) for c in batch))
            await asyncio.gather(*(nodes.two.unregister(c) for c in batch[:15]))
            n += 1

    churner = asyncio.create_task(churn())
    try:
        for _ in range(3):
            listed = [c.client_id for c in await nodes.one.list_clients()]
            assert len(listed) == len(set(listed)), "a client was listed twice"
            assert stable <= set(listed)
            assert all(c in stable or c.startswith("churn-") for c in listed)
    finally:
        stop.set()
        await churner
