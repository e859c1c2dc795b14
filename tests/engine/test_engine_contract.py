"""The MeshEngine and LeaderLockEngine contract (engine/base.py), on Redis and memory://."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from meshsrpc.engine import LeaderLockEngine, MeshEngine
from meshsrpc.engine.base import MessageSource, SubscriptionEvent

OpenEngine = Callable[..., MeshEngine]


def ignore_events(event: SubscriptionEvent) -> None:
    pass


async def test_instance_ids_count_from_one_per_mesh_key(open_engine: OpenEngine) -> None:
    one, two = open_engine("one"), open_engine("two")
    assert [await one.allocate_instance_id() for _ in range(3)] == [1, 2, 3]
    assert await two.allocate_instance_id() == 1


async def test_concurrent_id_allocation_never_repeats(open_engine: OpenEngine) -> None:
    engines = [open_engine() for _ in range(5)]
    ids = await asyncio.gather(*(e.allocate_instance_id() for e in engines for _ in range(10)))
    assert sorted(ids) == list(range(1, 51))


async def test_heartbeat_reports_whether_the_entry_is_new(open_engine: OpenEngine) -> None:
    engine = open_engine()
    assert await engine.heartbeat(1) is True
    assert await engine.heartbeat(1) is False
    await engine.deregister(1)
    assert await engine.heartbeat(1) is True


async def test_register_and_list_nodes(open_engine: OpenEngine) -> None:
    engine = open_engine()
    await engine.register_node(1, "host-a")
    await engine.register_node(2, "host-b")
    assert await engine.list_nodes() == {1: "host-a", 2: "host-b"}


async def test_deregister_removes_the_heartbeat_and_the_node(open_engine: OpenEngine) -> None:
    engine = open_engine()
    for node in (1, 2):
        await engine.heartbeat(node)
        await engine.register_node(node, "h")
    await engine.deregister(1)
    assert await engine.list_nodes() == {2: "h"}
    assert await engine.heartbeat(1) is True  # its heartbeat entry was gone


async def test_cleanup_removes_only_expired_nodes_and_returns_each_once(
    open_engine: OpenEngine,
) -> None:
    engine = open_engine()
    for node in (1, 2):
        await engine.heartbeat(node)
        await engine.register_node(node, "h")
    await asyncio.sleep(0.3)
    await engine.heartbeat(2)
    assert await engine.cleanup_expired(200) == [1]
    assert await engine.cleanup_expired(200) == []
    assert await engine.list_nodes() == {2: "h"}
    assert await engine.cleanup_expired(60_000) == []


async def test_concurrent_cleanups_report_a_dead_node_once(open_engine: OpenEngine) -> None:
    engines = [open_engine() for _ in range(4)]
    await engines[0].heartbeat(7)
    await engines[0].register_node(7, "h")
    await asyncio.sleep(0.1)
    results = await asyncio.gather(*(e.cleanup_expired(50) for e in engines))
    assert sorted(node for result in results for node in result) == [7]


async def test_rejoin_restores_the_node_and_the_id_counter(open_engine: OpenEngine) -> None:
    engine = open_engine()
    await engine.rejoin(5, "h")
    assert await engine.list_nodes() == {5: "h"}
    assert await engine.allocate_instance_id() == 6
    await engine.rejoin(2, "h")  # never lowers the counter
    assert await engine.allocate_instance_id() == 7


async def test_inbox_and_broadcast_delivery(open_engine: OpenEngine) -> None:
    a, b, sender = open_engine(), open_engine(), open_engine()
    got: dict[str, list[tuple[MessageSource, bytes]]] = {"a": [], "b": []}
    await a.subscribe(1, lambda source, data: got["a"].append((source, data)), ignore_events)
    await b.subscribe(2, lambda source, data: got["b"].append((source, data)), ignore_events)
    await sender.publish_to_node(2, b'{"to":2}')
    await sender.publish_broadcast(b'{"all":true}')
    await sender.publish_to_node(9, b"nobody listens")
    for _ in range(100):
        if len(got["a"]) == 1 and len(got["b"]) == 2:
            break
        await asyncio.sleep(0.02)
    assert got["a"] == [(MessageSource.BROADCAST, b'{"all":true}')]
    assert got["b"] == [
        (MessageSource.INBOX, b'{"to":2}'),
        (MessageSource.BROADCAST, b'{"all":true}'),
    ]


async def test_send_to_node_queues_in_order_and_reports_when_sent(
    open_engine: OpenEngine,
) -> None:
    engine, sender = open_engine(), open_engine()
    got: list[bytes] = []
    await engine.subscribe(1, lambda source, data: got.append(data), ignore_events)
    sent = [sender.send_to_node(1, str(n).encode()) for n in range(20)]
    await asyncio.gather(*sent)
    for _ in range(100):
        if len(got) == 20:
            break
        await asyncio.sleep(0.02)
    assert got == [str(n).encode() for n in range(20)]


async def test_no_delivery_after_unsubscribe(open_engine: OpenEngine) -> None:
    engine, sender = open_engine(), open_engine()
    got: list[bytes] = []
    await engine.subscribe(1, lambda source, data: got.append(data), ignore_events)
    await engine.unsubscribe()
    await engine.unsubscribe()  # idempotent
    await sender.publish_to_node(1, b"late")
    await sender.publish_broadcast(b"late")
    await asyncio.sleep(0.2)
    assert got == []


async def test_lock_acquire_renew_release(lock: LeaderLockEngine, lock_key: str) -> None:
    key = lock_key
    assert await lock.acquire(key, "me", 1000)
    assert not await lock.acquire(key, "other", 1000)
    assert await lock.renew(key, "me", 1000)
    assert not await lock.renew(key, "other", 1000)
    assert not await lock.release(key, "other")
    assert await lock.release(key, "me")
    assert not await lock.release(key, "me")
    assert not await lock.renew(key, "me", 1000)
    assert await lock.acquire(key, "other", 1000)


async def test_lock_expires_after_its_ttl_unless_renewed(
    lock: LeaderLockEngine, lock_key: str
) -> None:
    # Waits only ever run longer on a loaded machine: each one is chosen so that
    # running late cannot change the outcome.
    key = lock_key
    assert await lock.acquire(key, "me", 300)
    assert await lock.renew(key, "me", 5000)
    await asyncio.sleep(0.4)
    assert not await lock.acquire(key, "other", 200)  # the renewal extended it
    assert await lock.renew(key, "me", 100)
    await asyncio.sleep(0.3)
    assert not await lock.renew(key, "me", 200)  # not renewed in time: expired
    assert await lock.acquire(key, "other", 200)
