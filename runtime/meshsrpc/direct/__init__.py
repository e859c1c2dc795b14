"""The direct data plane: node-to-node connections for mesh calls (issue 16).

Redis stays the control plane (ids, heartbeats, the leader, the registry, broadcasts)
and the fallback; a node that advertises a data-plane address is called over a
persistent, authenticated connection instead of through its Redis inbox. See
``docs/wire.md`` ("Direct channels") for the wire format and ``docs/configuration.md``
for the settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..keys import MeshKeys
from ..settings import RedisSettings
from .channel import Channel
from .directory import Address, Directory
from .link import NodeLink
from .settings import DirectSettings, resolve_direct_settings, tls_contexts

__all__ = [
    "Address",
    "Channel",
    "DirectSettings",
    "NodeLink",
    "open_node_link",
    "resolve_direct_settings",
    "tls_contexts",
]

logger = logging.getLogger("meshsrpc.direct")


async def open_node_link(
    direct: DirectSettings | bool | None,
    redis: RedisSettings,
    key: str,
    instance_id: int,
    *,
    on_message: Callable[[bytes], None],
    on_lost: Callable[[Channel], None],
) -> NodeLink | None:
    """Start the data plane of node ``instance_id``, or return None (logged) when off."""
    settings = resolve_direct_settings(direct)
    if not settings.enabled:
        logger.debug("mesh %s: direct channels off; calls to other nodes go through Redis", key)
        return None
    if redis.is_memory:
        return None  # one process: nothing to gain
    if redis.is_cluster:
        # The address hash lives on one Redis; on a cluster the calls go through it.
        logger.debug("mesh %s: direct channels are not used on a Redis Cluster", key)
        return None
    if not settings.secret_bytes:
        # Off by default (opt-in): a debug line then; asked for in code without a
        # secret, a warning, since the caller expected them on. Either way, one line.
        logger.log(
            logging.DEBUG if direct is None else logging.WARNING,
            "mesh %s: direct channels off: no mesh secret (set MESH_DIRECT_SECRET, or "
            "direct=DirectSettings(secret=...)); calls to other nodes go through Redis",
            key,
        )
        return None
    keys = MeshKeys(redis.key_prefix, key)
    link = NodeLink(
        settings,
        Directory(redis, keys.direct),
        key=key,
        base=keys.base,
        on_message=on_message,
        on_lost=on_lost,
    )
    try:
        await link.start(instance_id)
    except BaseException:
        await link.close()
        raise
    return link
