"""NodeLink: a node's direct connections to the other nodes, beside its Redis inbox.

The mesh asks :meth:`NodeLink.send` first for everything it would publish to one
node's inbox (requests, replies, request heartbeats). With an open direct
connection to that node (opened by either side) the frame is written there and the
connection returned; otherwise None, and the mesh publishes through Redis as
always, while a connection is opened in the background for the next calls. Frames
arriving on any connection go to the same handler as the Redis inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from .._tasks import cancel_and_wait, raise_if_cancelling
from . import handshake
from .channel import Channel
from .directory import Address, Directory
from .settings import DirectSettings

__all__ = ["NodeLink"]

logger = logging.getLogger("meshsrpc.direct")

_HANDSHAKE_TIMEOUT = 5.0
_CLOSE_TIMEOUT = 3.0
_WILDCARDS = {"", "0.0.0.0", "::"}


class _Peer:
    """What this node knows about reaching one other node directly."""

    __slots__ = ("channel", "channels", "connecting", "instance_id", "retry_at", "warned")

    def __init__(self, instance_id: int) -> None:
        self.instance_id = instance_id
        #: The open connection sends use (the oldest of ``channels``).
        self.channel: Channel | None = None
        self.channels: list[Channel] = []
        self.connecting: asyncio.Task[None] | None = None
        self.retry_at = 0.0
        #: Whether the failure to connect was logged (once, until a connection works).
        self.warned = False


class NodeLink:
    """The data plane of one mesh node: a listener, and connections made on demand."""

    def __init__(
        self,
        settings: DirectSettings,
        directory: Directory,
        *,
        key: str,
        base: str,
        on_message: Callable[[bytes], None],
        on_lost: Callable[[Channel], None],
    ) -> None:
        self.settings = settings
        self.key = key
        self.address: Address | None = None
        self._directory = directory
        self._base = base
        self._secret = settings.secret_bytes
        self._on_message = on_message
        self._on_lost = on_lost
        self._instance_id = 0
        self._server: asyncio.Server | None = None
        self._peers: dict[int, _Peer] = {}
        self._channels: set[Channel] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # --- lifecycle ------------------------------------------------------------------

    async def start(self, instance_id: int) -> None:
        """Listen, then advertise the address in the mesh's ``direct`` hash."""
        self._instance_id = instance_id
        settings = self.settings
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._accepted, settings.host, settings.port, ssl=settings.ssl, reuse_address=True
        )
        port = self._server.sockets[0].getsockname()[1]
        host = settings.advertise_host or settings.host
        if host in _WILDCARDS:
            host = socket.gethostbyname(socket.gethostname())
        self.address = Address(host, settings.advertise_port or port, settings.ssl is not None)
        await self.publish()
        pruning = loop.create_task(self._prune_loop(), name=f"meshsrpc-direct-prune {self.key}")
        self._tasks.add(pruning)
        pruning.add_done_callback(self._tasks.discard)
        # Debug: mesh_start's one INFO line is the mesh's own.
        logger.debug(
            "mesh %s: node %d takes direct calls on %s:%d (advertised as %s)",
            self.key,
            instance_id,
            settings.host,
            port,
            self.address,
        )

    async def publish(self) -> None:
        """(Re)write this node's address (after a start, or a rejoin)."""
        if self.address is not None:
            await self._directory.publish(self._instance_id, self.address)

    @property
    def known_peers(self) -> set[int]:
        """The ids of the nodes this node keeps connection state for."""
        return set(self._peers)

    async def prune(self) -> None:
        """Forget the nodes that have no address any more (dead and removed, or
        stopped) and no open connection; a later call starts afresh."""
        if not self._peers:
            return
        listed = await self._directory.listed()
        for instance_id, peer in list(self._peers.items()):
            if instance_id not in listed and not peer.channels and peer.connecting is None:
                del self._peers[instance_id]

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.prune_interval)
            try:
                await self.prune()
            except Exception as exc:
                raise_if_cancelling()
                logger.debug("mesh %s: could not prune the direct peers: %s", self.key, exc)

    async def forget(self, instance_ids: list[int]) -> None:
        """Nodes the leader removed as dead: drop their addresses and state."""
        for instance_id in instance_ids:
            self._peers.pop(instance_id, None)
        try:
            await self._directory.remove(*instance_ids)
        except Exception as exc:
            raise_if_cancelling()
            logger.warning("mesh %s: could not remove direct addresses: %s", self.key, exc)

    async def close(self) -> None:
        """Withdraw the address, stop listening and drop every connection."""
        self._closing = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._directory.remove(self._instance_id)
        if self._server is not None:
            self._server.close()
        await cancel_and_wait(self._tasks)
        for channel in list(self._channels):
            channel.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self._server.wait_closed()
        self._peers.clear()
        await self._directory.aclose()

    # --- sending ----------------------------------------------------------------------

    def send(self, instance_id: int, payload: bytes) -> Channel | None:
        """Write ``payload`` to ``instance_id`` directly and return the connection used,
        or return None (nothing written: publish it through Redis).

        None too while the connection is paused (its peer reads too slowly): what
        nobody can wait for (replies, request heartbeats) must not pile up there.
        """
        peer = self._peers.get(instance_id)
        if peer is None:
            peer = self._peers[instance_id] = _Peer(instance_id)
        else:
            channel = peer.channel
            if channel is not None:
                if channel.paused:
                    return None
                channel.send(payload)
                return channel
        if peer.connecting is None and not self._closing:
            loop = asyncio.get_running_loop()
            if loop.time() >= peer.retry_at:
                peer.connecting = loop.create_task(self._connect(peer))
                self._tasks.add(peer.connecting)
                peer.connecting.add_done_callback(self._tasks.discard)
        return None

    def congested(self, instance_id: int) -> Channel | None:
        """The connection to ``instance_id`` while it is paused (await its
        :meth:`~Channel.wait_writable` before sending a call), else None."""
        peer = self._peers.get(instance_id)
        channel = None if peer is None else peer.channel
        return channel if channel is not None and channel.paused else None

    def is_direct(self, instance_id: int) -> bool:
        """True while an open direct connection to ``instance_id`` exists."""
        return self.channel_to(instance_id) is not None

    def channel_to(self, instance_id: int) -> Channel | None:
        """The open connection calls to ``instance_id`` use, if any."""
        peer = self._peers.get(instance_id)
        return None if peer is None else peer.channel

    async def _connect(self, peer: _Peer) -> None:
        loop = asyncio.get_running_loop()
        made: list[Channel] = []
        address: Address | None = None
        try:
            address = await self._directory.lookup(peer.instance_id)
            if address is None:
                # A TypeScript node, an older one, or direct channels off there.
                peer.retry_at = loop.time() + self.settings.retry_interval
                return
            context = self._client_context(address)
            settings = self.settings
            async with asyncio.timeout(settings.connect_timeout):
                await loop.create_connection(
                    lambda: _made(made, self._new_channel()),
                    address.host,
                    address.port,
                    ssl=context,
                    server_hostname=address.host if context is not None else None,
                )
                channel = made[0]
                channel.peer_id = peer.instance_id
                await handshake.initiate(
                    channel, self._secret, self._base, self._instance_id, peer.instance_id
                )
        except Exception as exc:
            raise_if_cancelling()
            for channel in made:
                channel.abort()
            peer.retry_at = loop.time() + self.settings.retry_interval
            if address is None:
                logger.debug(
                    "mesh %s: no direct address of node %d: %s", self.key, peer.instance_id, exc
                )
            elif not peer.warned:
                peer.warned = True
                logger.warning(
                    "mesh %s: no direct channel to node %d at %s (%s); calling it through "
                    "Redis, retrying every %g s",
                    self.key,
                    peer.instance_id,
                    address,
                    _describe(exc),
                    self.settings.retry_interval,
                )
            return
        except BaseException:
            for channel in made:
                channel.abort()
            raise
        finally:
            peer.connecting = None
        if self._closing or self._peers.get(peer.instance_id) is not peer:
            channel.abort()
            return
        if peer.warned:
            peer.warned = False
            logger.info("mesh %s: direct channel to node %d is up", self.key, peer.instance_id)
        self._attach(peer, channel)

    def _client_context(self, address: Address) -> Any:
        settings = self.settings
        if address.tls:
            if settings.client_ssl is None:
                raise ConnectionError("the node takes TLS only, and no client_ssl is set")
            return settings.client_ssl
        if settings.ssl is not None:
            # This node speaks TLS only: no plain-text connection out either.
            raise ConnectionError("the node does not offer TLS")
        return None

    # --- accepting ------------------------------------------------------------------

    def _new_channel(self) -> Channel:
        settings = self.settings
        return Channel(
            settings.max_frame_size,
            write_buffer_high=settings.write_buffer_high,
            stall_timeout=settings.stall_timeout,
        )

    def _accepted(self) -> Channel:
        channel = self._new_channel()
        task = asyncio.get_running_loop().create_task(self._accept(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return channel

    async def _accept(self, channel: Channel) -> None:
        try:
            async with asyncio.timeout(_HANDSHAKE_TIMEOUT):
                await channel.made
                caller = await handshake.accept(
                    channel, self._secret, self._base, self._instance_id
                )
        except handshake.HandshakeError as exc:
            logger.warning(
                "mesh %s: refused a direct connection from %s: %s", self.key, channel.peer_name, exc
            )
            channel.close()
            return
        except Exception as exc:
            raise_if_cancelling()
            logger.info(
                "mesh %s: direct connection from %s ended in its handshake: %s",
                self.key,
                channel.peer_name,
                _describe(exc),
            )
            channel.abort()
            return
        except BaseException:
            channel.abort()
            raise
        channel.peer_id = caller
        if self._closing:
            channel.abort()
            return
        peer = self._peers.get(caller)
        if peer is None:
            peer = self._peers[caller] = _Peer(caller)
        self._attach(peer, channel)
        handshake.confirm(channel)

    # --- connections ----------------------------------------------------------------

    def _attach(self, peer: _Peer, channel: Channel) -> None:
        channel.on_closed = self._closed
        channel.open(self._on_message)
        if channel.closed:  # a bad frame right behind the handshake
            return
        self._channels.add(channel)
        peer.channels.append(channel)
        if peer.channel is None:
            peer.channel = channel

    def _closed(self, channel: Channel, exc: BaseException | None) -> None:
        self._channels.discard(channel)
        peer = self._peers.get(channel.peer_id)
        if peer is not None and channel in peer.channels:
            peer.channels.remove(channel)
            if peer.channel is channel:
                peer.channel = peer.channels[0] if peer.channels else None
            # Reconnect on the next call (the address may have changed: a restart).
            peer.retry_at = 0.0
        if not self._closing:
            logger.info(
                "mesh %s: direct channel to node %d closed%s",
                self.key,
                channel.peer_id,
                f": {_describe(exc)}" if exc else "",
            )
        self._on_lost(channel)


def _made(made: list[Channel], channel: Channel) -> Channel:
    made.append(channel)
    return channel


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
