"""MeshService.invoke: request/response, errors, timeouts, request heartbeats (WIRE.md §1)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from mesh_helpers import MakeMesh, eventually
from meshsrpc import (
    MeshError,
    MeshHandlerError,
    MeshNoHandlerError,
    MeshRequestTimeoutError,
    MeshStoppedError,
    RedisSettings,
)
from meshsrpc.engine import open_mesh_engine
from meshsrpc.settings import RedisLike, resolve_redis_settings


async def publish_raw(backend: RedisLike, key: str, instance_id: int, payload: bytes) -> None:
    """Publish bytes to a node's inbox, as any other process on the mesh could."""
    settings = resolve_redis_settings(backend)
    engine = open_mesh_engine(settings, key)
    try:
        await engine.publish_to_node(instance_id, payload)
    finally:
        await engine.aclose()


async def test_request_response_between_two_nodes(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    b.register_handler("echo", lambda data: {"got": data, "on": b.instance_id})
    data = {"text": 'a/b "q" é', "n": [1, 2.5, None, True]}
    assert await a.invoke(b.instance_id, "echo", data) == {"got": data, "on": 2}


async def test_async_handler_answers_remotely(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()

    async def double(data: int) -> int:
        await asyncio.sleep(0.01)
        return data * 2

    b.register_handler("double", double)
    assert await a.invoke(b.instance_id, "double", 21) == 42


async def test_local_invoke_calls_the_handler_directly(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    not_json = {1, 2}  # would not survive a trip through JSON
    received: list[Any] = []
    a.register_handler("keep", lambda data: received.append(data) or data)
    assert await a.invoke(a.instance_id, "keep", not_json) is not_json
    assert received[0] is not_json


async def test_local_sync_handler_error_propagates_as_raised(make_mesh: MakeMesh) -> None:
    a = await make_mesh()

    def fail(data: Any) -> None:
        raise KeyError("missing")

    a.register_handler("fail", fail)
    with pytest.raises(KeyError, match="missing"):
        await a.invoke(a.instance_id, "fail", None)


async def test_local_async_handler_error_propagates_as_raised(make_mesh: MakeMesh) -> None:
    a = await make_mesh()

    async def fail(data: Any) -> None:
        raise ValueError("bad value")

    a.register_handler("fail", fail)
    with pytest.raises(ValueError, match="bad value"):
        await a.invoke(a.instance_id, "fail", None)


async def test_remote_sync_handler_error_becomes_mesh_handler_error(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()

    def fail(data: Any) -> None:
        raise RuntimeError("remote boom")

    b.register_handler("fail", fail)
    with pytest.raises(MeshHandlerError, match="remote boom") as caught:
        await a.invoke(b.instance_id, "fail", None)
    assert caught.value.message == "remote boom"


async def test_remote_async_handler_error_becomes_mesh_handler_error(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()

    async def fail(data: Any) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async remote boom")

    b.register_handler("fail", fail)
    with pytest.raises(MeshHandlerError, match="async remote boom"):
        await a.invoke(b.instance_id, "fail", None)


async def test_missing_handler_locally_raises_no_handler_error(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    with pytest.raises(MeshNoHandlerError) as caught:
        await a.invoke(a.instance_id, "nope", None)
    assert caught.value.type == "nope"


async def test_missing_handler_remotely_raises_no_handler_error(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    with pytest.raises(MeshNoHandlerError) as caught:
        await a.invoke(b.instance_id, "nope", None)
    assert caught.value.type == "nope"


async def test_unknown_instance_times_out(make_mesh: MakeMesh) -> None:
    a = await make_mesh(request_timeout=0.3)
    with pytest.raises(MeshRequestTimeoutError) as caught:
        await a.invoke(99, "echo", None)
    assert (caught.value.instance_id, caught.value.type) == (99, "echo")


async def test_per_request_timeout_overrides_the_default(
    make_mesh: MakeMesh, backend: RedisLike
) -> None:
    # A long node ttl: the silent node stays listed, so only the timeout ends the calls.
    a = await make_mesh(request_timeout=0.3, node_ttl=30.0)
    engine = open_mesh_engine(resolve_redis_settings(backend), "k")
    silent = await engine.allocate_instance_id()  # listed, but never answers
    await engine.heartbeat(silent)
    await engine.register_node(silent, "silent")
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        with pytest.raises(MeshRequestTimeoutError):
            await a.invoke(silent, "echo", None)
        default_wait = loop.time() - started
        started = loop.time()
        with pytest.raises(MeshRequestTimeoutError):
            await a.invoke(silent, "echo", None, timeout=2.0)
        override_wait = loop.time() - started
    finally:
        await engine.aclose()
    assert default_wait < 1.5  # generous: the 0.3 s default, not the 2 s override
    assert override_wait >= 1.9


async def test_slow_handler_answers_thanks_to_request_heartbeats(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()

    async def slow(data: Any) -> str:
        await asyncio.sleep(0.9)  # 3x the caller's timeout
        return "done"

    b.register_handler("slow", slow)
    assert await a.invoke(b.instance_id, "slow", None, timeout=0.3) == "done"


async def test_request_heartbeats_follow_each_callers_timeout(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()

    async def slow(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    b.register_handler("slow", slow)
    results = await asyncio.gather(
        a.invoke(b.instance_id, "slow", 0.6, timeout=0.2),
        a.invoke(b.instance_id, "slow", 1.5, timeout=0.5),
        b.invoke(a.instance_id, "slow", 0.9, timeout=0.3),
        return_exceptions=True,
    )
    assert isinstance(results[2], MeshNoHandlerError)
    a.register_handler("slow", slow)
    results = await asyncio.gather(
        a.invoke(b.instance_id, "slow", 0.6, timeout=0.2),
        a.invoke(b.instance_id, "slow", 1.5, timeout=0.5),
        b.invoke(a.instance_id, "slow", 0.9, timeout=0.3),
    )
    assert results == [0.6, 1.5, 0.9]


async def test_handler_without_heartbeats_in_time_times_out(make_mesh: MakeMesh) -> None:
    """The timeout is real: a node that stops answering (no heartbeats) is given up on."""
    a = await make_mesh()
    b = await make_mesh()
    b.register_handler("slow", lambda data: asyncio.sleep(5))
    await b.stop()  # nobody listens on node 2 any more
    with pytest.raises(MeshRequestTimeoutError):
        await a.invoke(2, "slow", None, timeout=0.3)


async def test_concurrent_requests_to_one_node(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()

    async def echo(data: int) -> int:
        await asyncio.sleep(0.01 * (data % 5))
        return data

    b.register_handler("echo", echo)
    results = await asyncio.gather(*(a.invoke(b.instance_id, "echo", i) for i in range(50)))
    assert results == list(range(50))


async def test_concurrent_requests_in_both_directions(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    a.register_handler("who", lambda data: f"a:{data}")
    b.register_handler("who", lambda data: f"b:{data}")
    calls = [a.invoke(b.instance_id, "who", i) for i in range(20)]
    calls += [b.invoke(a.instance_id, "who", i) for i in range(20)]
    results = await asyncio.gather(*calls)
    assert results == [f"b:{i}" for i in range(20)] + [f"a:{i}" for i in range(20)]


async def test_handlers_registered_after_start_work_locally_and_remotely(
    make_mesh: MakeMesh,
) -> None:
    a = await make_mesh()
    b = await make_mesh()
    with pytest.raises(MeshNoHandlerError):
        await a.invoke(b.instance_id, "late", 1)
    b.register_handler("late", lambda data: data + 1)
    assert await a.invoke(b.instance_id, "late", 1) == 2
    assert await b.invoke(b.instance_id, "late", 1) == 2


async def test_registering_a_handler_again_replaces_it(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    b.register_handler("v", lambda data: 1)
    b.register_handler("v", lambda data: 2)
    assert await a.invoke(b.instance_id, "v", None) == 2


async def test_pending_requests_fail_when_stopped(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    b.register_handler("hang", lambda data: asyncio.sleep(30))
    call = asyncio.ensure_future(a.invoke(b.instance_id, "hang", None, timeout=20))
    await asyncio.sleep(0.2)
    await a.stop()
    with pytest.raises(MeshStoppedError, match="stopped"):
        await asyncio.wait_for(call, 5)


async def test_messages_after_stop_are_ignored(make_mesh: MakeMesh, backend: RedisLike) -> None:
    a = await make_mesh()
    b = await make_mesh()
    calls: list[Any] = []
    b.register_handler("count", calls.append)
    old_id = b.instance_id
    await b.stop()
    request = {
        "requestId": "r1",
        "senderInstanceId": 1,
        "type": "count",
        "data": 1,
        "timeoutMs": 500,
    }
    await publish_raw(backend, "k", old_id, json.dumps(request).encode())
    # Even a message already on its way to the callback is dropped.
    from meshsrpc.engine.base import MessageSource

    b._on_message(MessageSource.INBOX, json.dumps(request).encode())
    await asyncio.sleep(0.3)
    assert calls == []
    assert a.is_running


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"text"',
        b'{"senderInstanceId": 1, "type": "count", "data": 1}',
        b'{"requestId": 5, "senderInstanceId": 1, "type": "count", "data": 1}',
        b'{"requestId": "r", "senderInstanceId": "1", "type": "count", "data": 1}',
        b'{"requestId": "r", "senderInstanceId": true, "type": "count", "data": 1}',
        b'{"requestId": "r", "senderInstanceId": 1, "data": 1}',
        b'{"requestId": "r", "senderInstanceId": 1, "type": 7, "data": 1}',
    ],
    ids=[
        "not-json",
        "not-utf8",
        "array",
        "string",
        "no-requestId",
        "requestId-not-str",
        "sender-not-int",
        "sender-bool",
        "no-type",
        "type-not-str",
    ],
)
async def test_malformed_messages_are_dropped_without_crashing(
    make_mesh: MakeMesh, backend: RedisLike, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    a = await make_mesh()
    b = await make_mesh()
    calls: list[Any] = []
    b.register_handler("count", lambda data: calls.append(data) or len(calls))
    await publish_raw(backend, "k", b.instance_id, payload)
    await eventually(lambda: "dropping" in caplog.text)
    assert calls == []
    assert await a.invoke(b.instance_id, "count", 1) == 1


async def test_unknown_response_and_heartbeat_ids_are_ignored(
    make_mesh: MakeMesh, backend: RedisLike
) -> None:
    a = await make_mesh()
    b = await make_mesh()
    b.register_handler("echo", lambda data: data)
    for message in (
        {"requestId": "unknown-1", "reply": True, "data": 1},
        {"requestId": "unknown-2", "reply": True, "error": "boom"},
        {"requestId": "unknown-3", "heartbeat": True},
        {"reply": True, "data": 1},
        {"heartbeat": True},
    ):
        await publish_raw(backend, "k", a.instance_id, json.dumps(message).encode())
    await asyncio.sleep(0.1)
    assert await a.invoke(b.instance_id, "echo", "fine") == "fine"


async def test_result_that_is_not_json_becomes_a_handler_error(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    b.register_handler("set", lambda data: {1, 2})
    with pytest.raises(MeshHandlerError, match="not JSON"):
        await a.invoke(b.instance_id, "set", None)


async def test_request_data_that_is_not_json_raises_before_sending(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    with pytest.raises(TypeError):
        await a.invoke(b.instance_id, "echo", {1, 2})


async def test_invoke_needs_a_positive_timeout(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    with pytest.raises(ValueError, match="positive"):
        await a.invoke(2, "echo", None, timeout=0)


async def test_redis_settings_url_string_works(redis_settings: RedisSettings) -> None:
    """``redis=`` also accepts a URL (the prefix then comes from the environment)."""
    from meshsrpc import MeshService

    mesh = MeshService("url-" + (redis_settings.prefix or ""), redis=redis_settings.url)
    await mesh.start()
    try:
        mesh.register_handler("echo", lambda data: data)
        assert await mesh.invoke(mesh.instance_id, "echo", 3) == 3
    finally:
        await mesh.stop()


async def test_call_to_a_node_that_left_fails_before_its_timeout(
    make_mesh: MakeMesh, backend: RedisLike
) -> None:
    a = await make_mesh()
    engine = open_mesh_engine(resolve_redis_settings(backend), "k")
    silent = await engine.allocate_instance_id()  # joins, then goes silent
    await engine.heartbeat(silent)
    await engine.register_node(silent, "silent")
    try:
        call = asyncio.ensure_future(a.invoke(silent, "echo", None, timeout=30.0))
        # The leader removes it after node_ttl; the call then fails, not after 30 s.
        with pytest.raises(MeshRequestTimeoutError):
            await asyncio.wait_for(call, 10)
    finally:
        await engine.aclose()


async def test_request_that_cannot_be_sent_fails_with_mesh_error(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    engine = a._node.engine
    assert engine is not None

    def broken_send(instance_id: int, payload: bytes) -> asyncio.Future[None]:
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(ConnectionError("redis is gone"))
        return failed

    engine.send_to_node = broken_send  # type: ignore[method-assign]
    with pytest.raises(MeshError, match=r"could not send mesh request 'echo'.*redis is gone"):
        await a.invoke(b.instance_id, "echo", 1, timeout=5)


async def test_stop_cancels_handlers_still_serving_other_nodes(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever(data: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    b.register_handler("forever", forever)
    call = asyncio.create_task(a.invoke(b.instance_id, "forever", None, timeout=30))
    await asyncio.wait_for(started.wait(), 5)
    await b.stop()
    assert cancelled.is_set()
    assert b._requests.serving == {}
    call.cancel()


async def test_a_remote_handler_runs_in_a_task_of_its_own(make_mesh: MakeMesh) -> None:
    # A real task: asyncio.timeout() and task groups work from its first line (a
    # handler run inside the read callback, before any task, would break them).
    a = await make_mesh()
    b = await make_mesh()
    tasks: list[asyncio.Task[Any] | None] = []

    async def bounded(data: int) -> int:
        async with asyncio.timeout(5):
            tasks.append(asyncio.current_task())
            await asyncio.sleep(0)
            return data + 1

    b.register_handler("bounded", bounded)
    assert await a.invoke(b.instance_id, "bounded", 1) == 2
    assert await a.invoke(b.instance_id, "bounded", 2) == 3
    assert None not in tasks and tasks[0] is not tasks[1]
