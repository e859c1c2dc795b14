"""Request ids of MeshService.invoke: uuid4-formatted, never repeated."""

from __future__ import annotations

import uuid

from meshsrpc.mesh_requests import _RequestIds


def test_request_ids_are_uuid4_formatted_and_never_repeat() -> None:
    ids = _RequestIds()
    batch = [ids.next() for _ in range(1000)]
    assert len(set(batch)) == len(batch)
    for request_id in batch[:10]:
        assert str(uuid.UUID(request_id)) == request_id
        assert uuid.UUID(request_id).version == 4


def test_request_ids_of_two_generators_differ() -> None:
    assert _RequestIds().next() != _RequestIds().next()
