"""Every Redis key and channel name meshsrpc uses (WIRE.md §1 to §3): one home for the wire's names.

``P`` is the key prefix of the settings (``MESH_REDIS_PREFIX``...), ``K`` a mesh key.
The TypeScript nodes use the same names, so changing one breaks a mixed mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MeshKeys",
    "RegistryKeys",
    "client_mesh_key",
    "leader_lock_key",
    "replay_key_prefix",
]


@dataclass(frozen=True)
class MeshKeys:
    """Redis key and channel names of one mesh (``P:mesh:K:...``, WIRE.md §1)."""

    prefix: str
    key: str

    @property
    def base(self) -> str:
        """``P:mesh:K``."""
        return f"{self.prefix}:mesh:{self.key}"

    @property
    def next_id(self) -> str:
        """The instance id counter (INCR)."""
        return f"{self.base}:next_id"

    @property
    def heartbeats(self) -> str:
        """Sorted set: member = instance id, score = last heartbeat (server ms)."""
        return f"{self.base}:heartbeats"

    @property
    def nodes(self) -> str:
        """Hash: field = instance id, value = hostname."""
        return f"{self.base}:nodes"

    @property
    def broadcast(self) -> str:
        """The broadcast channel every node subscribes to."""
        return f"{self.base}:broadcast"

    @property
    def leader(self) -> str:
        """The current leader's instance id (an extension, for operators' tools)."""
        return f"{self.base}:leader"

    @property
    def events(self) -> str:
        """The presence-event channel (an extension: only operators' tools subscribe)."""
        return f"{self.base}:events"

    @property
    def direct(self) -> str:
        """Hash: field = instance id, value = the node's data-plane address (an extension)."""
        return f"{self.base}:direct"

    def inbox(self, instance_id: int) -> str:
        """The pub/sub channel of one node."""
        return f"{self.base}:node:{instance_id}"


@dataclass(frozen=True)
class RegistryKeys:
    """The client registry of one mesh (``P:mesh:K:clients`` and per-node sets, WIRE.md §2)."""

    prefix: str
    key: str

    @property
    def base(self) -> str:
        """``P:mesh:K``: the registry lives beside its mesh's keys."""
        return MeshKeys(self.prefix, self.key).base

    @property
    def clients(self) -> str:
        """Hash: field = client id, value = JSON ``{nodeId, metadata, ...}``."""
        return f"{self.base}:clients"

    @property
    def node_prefix(self) -> str:
        """``P:mesh:K:node:``, followed by a node id and ``:clients``."""
        return f"{self.base}:node:"

    def node_clients(self, node_id: int) -> str:
        """Set: the client ids owned by ``node_id``."""
        return f"{self.node_prefix}{node_id}:clients"


def client_mesh_key(key: str) -> str:
    """``_mc:<key>``: the mesh key of the client service (and its registry) for app key ``key``."""
    return f"_mc:{key}"


def leader_lock_key(prefix: str, key: str) -> str:
    """``<mutex prefix>:leader:<key>``, the leader lock's Redis key."""
    return f"{prefix}:leader:{key}"


def replay_key_prefix(prefix: str, mesh_key: str) -> str:
    """``P:srpc:replay:<mesh key>:``, followed by a handshake's digest (SET NX PX)."""
    return f"{prefix}:srpc:replay:{mesh_key}:"
