"""examples/single_process: two nodes and three clients on memory://, no Redis."""

from __future__ import annotations

from examples.single_process.main import run


async def test_single_process_example_routes_between_nodes_without_redis(memory_url: str) -> None:
    lines = await run(memory_url)

    assert lines[0] == f"nodes [1, 2] share {memory_url}"
    assert "online: alice on node 1 (available)" in lines
    assert "online: bob on node 2 (busy)" in lines
    assert "online: carol on node 2 (available)" in lines
    assert "alice → bob: delivered=True by node 2" in lines
    assert "bob got 'hi!' from alice via node 1" in lines
    assert lines[-1].startswith("carol is now away; node 1 sees {")
    assert "'status': 'away'" in lines[-1]
