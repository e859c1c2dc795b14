"""Worst server RSS one signed client can cause with early byte-stream data (issue 20).

``python -m bench.early_data_rss [IDS] [MIB_PER_ID] [SECONDS]`` starts a test
server in its own process, connects one signed client that writes ``MIB_PER_ID`` MiB
to each of ``IDS`` fresh byte-stream ids nobody opens (defaults: 200 ids x 1.9 MiB),
samples the server's RSS until ``SECONDS`` after the last write, and prints it.
Not part of ``python -m bench``: it measures a cap, not a speed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from meshsrpc import SrpcClient, SrpcError

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage

ROOT = Path(__file__).resolve().parents[1]

SECRET = "rss-probe"
SERVER = f"""
import asyncio, sys
sys.path.insert(0, {str(ROOT)!r})
from meshsrpc import SrpcServer
from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage
async def main():
    server = SrpcServer(ClientMessage, ServerMessage, auth_secret={SECRET!r})
    await server.listen("127.0.0.1", 0)
    print(server.port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main(ids: int, per_id: int, seconds: float) -> None:
    """Run the probe and print the server's RSS before, at peak and after."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        port = int(await proc.stdout.readline())
        base = peak = rss_mb(proc.pid)
        client: SrpcClient[ClientMessage, ServerMessage] = SrpcClient(
            f"ws://127.0.0.1:{port}/srpc",
            ClientMessage,
            ServerMessage,
            "flood",
            client_secret=SECRET,
            enable_reconnect=False,
        )
        await client.connect()
        chunk = b"\0" * (64 * 1024)
        start = time.monotonic()
        sent = 0
        for _ in range(ids):
            if not client.is_connected:
                break
            writer = client.create_byte_stream()
            try:
                for _ in range(per_id // len(chunk)):
                    await writer.write(chunk)
                    sent += len(chunk)
            except SrpcError:
                pass  # the server destroyed this substream: on to the next id
            peak = max(peak, rss_mb(proc.pid))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak = max(peak, rss_mb(proc.pid))
            await asyncio.sleep(0.05)
        print(
            f"sent {sent / 2**20:.0f} MiB to {ids} fresh ids in {time.monotonic() - start:.1f} s;"
            f" still connected: {client.is_connected}; server RSS {base:.0f} MB before,"
            f" {peak:.0f} MB at peak, {rss_mb(proc.pid):.0f} MB after"
        )
        await client.disconnect()
    finally:
        proc.kill()
        await proc.wait()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(
            int(args[0]) if args else 200,
            int(float(args[1] if len(args) > 1 else 1.9) * 2**20),
            float(args[2]) if len(args) > 2 else 3.0,
        )
    )
