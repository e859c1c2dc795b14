"""A peer that reads too slowly pauses its callers; one that stops reading is dropped.

The peer is a stand-in for a node's data plane (node 999): it passes the handshake
with the mesh secret, then reads only when the test lets it.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
from direct_helpers import SECRET, InboxSpy, MakeMesh
from meshsrpc import DirectSettings, MeshConnectionLostError, MeshService, RedisSettings
from meshsrpc.direct import Address, Channel, handshake
from meshsrpc.direct.directory import Directory
from meshsrpc.keys import MeshKeys
from meshsrpc.testing import eventually

PEER = 999
HIGH = 256 * 1024
PAD = "x" * (128 * 1024)


class SlowPeer:
    """Node ``PEER``'s data plane: handshakes, then reads only while ``reading``."""

    def __init__(self, settings: RedisSettings) -> None:
        self._settings = settings
        self._keys = MeshKeys(settings.key_prefix, "k")
        self._server: asyncio.Server | None = None
        self.channels: list[Channel] = []
        self.transports: list[asyncio.Transport] = []
        self.tasks: set[asyncio.Future[None]] = set()
        #: The ``i`` of every request received, in order of arrival.
        self.received: list[int] = []
        self.answer = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        # A small receive buffer: the caller's side fills up after a few frames.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.bind(("127.0.0.1", 0))
        self._server = await loop.create_server(self._accepted, sock=sock)
        port = sock.getsockname()[1]
        directory = Directory(self._settings, self._keys.direct)
        try:
            await directory.publish(PEER, Address("127.0.0.1", port, False))
        finally:
            await directory.aclose()

    def refuse_more(self) -> None:
        """Take no further connections (a reconnect then fails)."""
        assert self._server is not None
        self._server.close()

    def read(self) -> None:
        for transport in self.transports:
            transport.resume_reading()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for channel in self.channels:
            channel.abort()
        if self._server is not None:
            self._server.close()

    def _accepted(self) -> Channel:
        peer = self

        class Recorder(Channel):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                peer.transports.append(transport)  # type: ignore[arg-type]

        channel = Recorder(64 * 1024 * 1024)
        self.channels.append(channel)
        self.tasks.add(asyncio.ensure_future(self._accept(channel)))
        return channel

    async def _accept(self, channel: Channel) -> None:
        await channel.made
        await handshake.accept(channel, SECRET.encode(), self._keys.base, PEER)
        channel.open(lambda frame: self._on_frame(channel, frame))
        handshake.confirm(channel)
        channel.flush()
        self.transports[-1].pause_reading()

    def _on_frame(self, channel: Channel, frame: bytes) -> None:
        message = json.loads(frame)
        data = message.get("data")
        if isinstance(data, dict) and "i" in data:
            self.received.append(data["i"])
            if self.answer:
                reply = {"requestId": message["requestId"], "reply": True, "data": data["i"]}
                channel.send(json.dumps(reply).encode())


@pytest.fixture
def direct() -> DirectSettings:
    return DirectSettings(
        secret=SECRET, retry_interval=0.2, write_buffer_high=HIGH, stall_timeout=1.0
    )


@pytest.fixture
async def peer(redis_settings: RedisSettings) -> AsyncIterator[SlowPeer]:
    slow = SlowPeer(redis_settings)
    await slow.start()
    yield slow
    await slow.close()


async def connect(a: MeshService) -> Channel:
    """The first call to the peer goes through Redis and opens the channel."""
    warm_up = asyncio.ensure_future(a.invoke(PEER, "warm-up", None, timeout=30))
    link = a.direct_link
    assert link is not None
    await eventually(lambda: link.is_direct(PEER))
    warm_up.cancel()
    channel = link.channel_to(PEER)
    assert channel is not None
    return channel


def indices(spy: InboxSpy) -> set[int]:
    found = set()
    for _, payload in spy.messages:
        data = json.loads(payload).get("data")
        if isinstance(data, dict) and "i" in data:
            found.add(data["i"])
    return found


async def test_a_slow_peer_pauses_its_callers_and_they_resume_when_it_reads(
    make_mesh: MakeMesh, peer: SlowPeer, redis_settings: RedisSettings
) -> None:
    a = await make_mesh()
    channel = await connect(a)
    peer.answer = True
    inbox = f"{redis_settings.prefix}:mesh:k:node:{PEER}"
    async with InboxSpy(redis_settings.url or "", inbox) as spy:
        calls = [
            asyncio.ensure_future(a.invoke(PEER, "echo", {"i": i, "pad": PAD}, timeout=30))
            for i in range(200)
        ]
        await eventually(lambda: channel.paused)
        # Bounded: the writers wait, the unsent bytes stay near the mark.
        await asyncio.sleep(0.2)
        assert channel.paused
        assert channel.buffered <= HIGH + 2 * len(PAD)
        assert len(peer.received) < 200
        peer.read()
        assert await asyncio.gather(*calls) == list(range(200))
    assert sorted(peer.received) == list(range(200))  # each exactly once
    assert indices(spy) == set()  # none through Redis


async def test_a_stalled_peer_is_dropped_written_calls_fail_waiting_ones_go_through_redis(
    make_mesh: MakeMesh, peer: SlowPeer, redis_settings: RedisSettings
) -> None:
    a = await make_mesh()
    channel = await connect(a)
    peer.refuse_more()
    inbox = f"{redis_settings.prefix}:mesh:k:node:{PEER}"
    async with InboxSpy(redis_settings.url or "", inbox) as spy:
        calls = {
            i: asyncio.ensure_future(a.invoke(PEER, "echo", {"i": i, "pad": PAD}, timeout=60))
            for i in range(200)
        }
        await eventually(lambda: channel.paused)
        await eventually(lambda: channel.closed, timeout=10)  # the stall timeout: 1 s
        lost: set[int] = set()

        def settled() -> bool:
            lost.update(
                i
                for i, call in calls.items()
                if call.done() and isinstance(call.exception(), MeshConnectionLostError)
            )
            return len(lost | indices(spy)) == len(calls)

        await eventually(settled, timeout=10)
        assert lost and indices(spy)  # some were written, some waited
        assert not lost & indices(spy)  # never both: nothing is sent twice
        for i, call in calls.items():
            if i not in lost:
                assert not call.done()  # waiting for node 999's reply through Redis
                call.cancel()
        await asyncio.gather(*calls.values(), return_exceptions=True)


async def test_the_paused_connection_is_used_again_once_the_peer_reads(
    make_mesh: MakeMesh, peer: SlowPeer
) -> None:
    a = await make_mesh()
    channel = await connect(a)
    peer.answer = True
    first = [
        asyncio.ensure_future(a.invoke(PEER, "echo", {"i": i, "pad": PAD}, timeout=30))
        for i in range(100)
    ]
    await eventually(lambda: channel.paused)
    peer.read()
    await asyncio.gather(*first)
    assert not channel.paused and not channel.closed
    assert await a.invoke(PEER, "echo", {"i": 100}, timeout=30) == 100
    assert a.direct_link is not None and a.direct_link.channel_to(PEER) is channel


async def test_replies_to_a_caller_that_reads_too_slowly_go_through_redis(
    make_mesh: MakeMesh, redis_settings: RedisSettings
) -> None:
    b = await make_mesh(direct=DirectSettings(secret=SECRET, write_buffer_high=HIGH))
    b.register_handler("big", lambda i: {"i": i, "pad": PAD})
    assert b.direct_link is not None and b.direct_link.address is not None
    caller = 998
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", b.direct_link.address.port))
    transport, channel = await loop.create_connection(lambda: Channel(1 << 26), sock=sock)
    base = MeshKeys(redis_settings.key_prefix, "k").base
    inbox = f"{redis_settings.prefix}:mesh:k:node:{caller}"
    direct: list[str] = []
    try:
        await handshake.initiate(channel, SECRET.encode(), base, caller, b.instance_id)
        channel.open(lambda frame: direct.append(json.loads(frame)["requestId"]))
        transport.pause_reading()  # a caller that reads nothing for now
        async with InboxSpy(redis_settings.url or "", inbox) as spy:
            for i in range(200):
                request = {
                    "requestId": f"r{i}",
                    "senderInstanceId": caller,
                    "type": "big",
                    "data": i,
                    "timeoutMs": 30000,
                }
                channel.send(json.dumps(request).encode())
                await asyncio.sleep(0.002)  # one request per loop turn or so
            await eventually(lambda: len(spy.messages) > 0, timeout=10)
            back = b.direct_link.channel_to(caller)
            assert back is not None
            # What B holds for the caller stays near the mark; the rest went to Redis.
            assert back.buffered <= HIGH + 3 * len(PAD)
            transport.resume_reading()
            await eventually(lambda: len(direct) + len(spy.messages) >= 200, timeout=10)
            via_redis = [json.loads(payload)["requestId"] for _, payload in spy.messages]
        assert via_redis and direct
        assert sorted(direct + via_redis) == sorted(f"r{i}" for i in range(200))  # each once
    finally:
        transport.abort()
