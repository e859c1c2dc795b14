"""examples/presence run as its docstrings say: a server process and two client processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from meshsrpc.redis_server import RedisServer, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def _wait_for_port(port: int, process: subprocess.Popen[str], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_server_and_client_commands(redis_server: RedisServer, mesh_prefix: str) -> None:
    env = {
        **os.environ,
        "MESH_REDIS_URL": redis_server.url,
        "MESH_REDIS_PREFIX": mesh_prefix,
        "MUTEX_REDIS_PREFIX": mesh_prefix,
        # The server and the clients share it (a server with no auth refuses everyone).
        "SRPC_AUTH_SECRET": "presence-example-secret",
    }
    port = free_port()
    url = f"ws://127.0.0.1:{port}/srpc"
    server = subprocess.Popen(
        [sys.executable, "-m", "examples.presence.server", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    bob: subprocess.Popen[str] | None = None
    try:
        _wait_for_port(port, server)
        client = [sys.executable, "-m", "examples.presence.client", "--url", url]
        bob = subprocess.Popen(
            [*client, "--id", "bob", "--linger", "3"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        alice_out = alice_err = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until bob is online
            alice = subprocess.run(
                [*client, "--id", "alice", "--send", "bob:hi", "--linger", "0"],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            alice_out, alice_err = alice.stdout, alice.stderr
            if alice.returncode == 0 and "delivered=True" in alice_out:
                break
            time.sleep(0.1)
        assert "sent to bob: delivered=True by node 1" in alice_out, alice_err
        assert "alice  node 1  available" in alice_out

        bob_out, bob_err = bob.communicate(timeout=30)
        assert bob.returncode == 0, bob_err
        assert "notification from alice: hi" in bob_out
    finally:
        if bob is not None and bob.poll() is None:
            bob.kill()
            bob.wait()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    assert server.returncode == 0, server.stderr.read() if server.stderr else ""
