"""Process orchestration for the benchmarks: profiles, pinned child processes, stats, results.

Every benchmark runs its servers and its load generators in separate processes
(``spawn``, so nothing is shared with the orchestrator's interpreter). With two or
more cores, servers (and Redis) are pinned to core 0 and load generators to core 1,
so the two sides never fight for one core's time slices.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import multiprocessing.connection
import os
import platform
import resource
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BenchResult",
    "Child",
    "ChildChannel",
    "NotAvailable",
    "Profile",
    "closed_loop",
    "latency_summary",
    "log",
]

SERVER_CORE = 0
LOAD_CORE = 1

_CTX = multiprocessing.get_context("spawn")
_START = time.monotonic()


def log(message: str) -> None:
    """One progress line on stderr, with the seconds since the run started."""
    print(f"[bench {time.monotonic() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


class NotAvailable(Exception):
    """A benchmark cannot run here: a meshsrpc part or a package is missing."""


# --- profiles -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """How long and how wide every benchmark runs."""

    name: str
    warmup: float
    duration: float
    echo_concurrency: tuple[int, ...]
    cross_concurrency: tuple[int, ...]
    local_concurrency: tuple[int, ...]
    registry_concurrency: tuple[int, ...]
    scale_sizes: tuple[int, ...]
    idle_connections: int
    codec_duration: float
    rounds: int = 1

    @property
    def ready_timeout(self) -> float:
        """How long a child may take to start (imports, Redis, listen)."""
        return 60.0


PROFILES = {
    "smoke": Profile(
        name="smoke",
        warmup=0.05,
        duration=0.2,
        echo_concurrency=(1, 4),
        cross_concurrency=(1, 4),
        local_concurrency=(1,),
        registry_concurrency=(4,),
        scale_sizes=(200,),
        idle_connections=20,
        codec_duration=0.1,
    ),
    "quick": Profile(
        name="quick",
        warmup=0.5,
        duration=2.0,
        echo_concurrency=(1, 10, 50, 200),
        cross_concurrency=(1, 10, 100),
        local_concurrency=(1, 10),
        registry_concurrency=(1, 16),
        scale_sizes=(10_000, 100_000),
        idle_connections=2_000,
        codec_duration=1.0,
        rounds=2,
    ),
    "full": Profile(
        name="full",
        warmup=2.0,
        duration=8.0,
        echo_concurrency=(1, 10, 50, 200),
        cross_concurrency=(1, 10, 100),
        local_concurrency=(1, 10),
        registry_concurrency=(1, 16),
        scale_sizes=(10_000, 100_000),
        idle_connections=5_000,
        codec_duration=4.0,
        rounds=4,
    ),
}


# --- results ------------------------------------------------------------------------------


@dataclass
class BenchResult:
    """What one benchmark measured: figures with baselines, targets, plot data."""

    name: str
    title: str
    status: str = "ok"  # "ok" | "not available" | "error"
    reason: str | None = None
    figures: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    latency_cdf: dict[str, list[float]] = field(default_factory=dict)
    throughput: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    # The machine's 1-minute load average when the benchmark started: with two
    # cores, anything above ~0.5 means something else was competing for them.
    load_average: float | None = None

    def figure(
        self,
        name: str,
        value: float | None,
        unit: str,
        *,
        baseline: float | None = None,
        baseline_name: str | None = None,
        higher_is_better: bool = True,
        **params: Any,
    ) -> dict[str, Any]:
        """Record one figure; the ratio is value / baseline when both are known."""
        ratio = value / baseline if value is not None and baseline else None
        entry = {
            "name": name,
            "value": value,
            "unit": unit,
            "baseline": baseline,
            "baseline_name": baseline_name,
            "ratio": ratio,
            "higher_is_better": higher_is_better,
            "params": params,
        }
        self.figures.append(entry)
        return entry

    def cpu_figure(
        self,
        name: str,
        run: dict[str, Any],
        base: dict[str, Any] | None,
        processes: Sequence[str],
        baseline_name: str | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """CPU microseconds per operation summed over ``processes`` (see closed_loop)."""

        def total(load: dict[str, Any] | None) -> float | None:
            if load is None:
                return None
            values = [load.get("cpu_us_per_op", {}).get(p) for p in processes]
            return None if any(v is None for v in values) else sum(values)

        return self.figure(
            name,
            total(run),
            "us CPU/op",
            baseline=total(base),
            baseline_name=baseline_name,
            higher_is_better=False,
            processes=list(processes),
            **params,
        )

    def target(self, description: str, met: bool | None, detail: str) -> None:
        """Record one target of the issue and whether this run met it."""
        self.targets.append({"description": description, "met": met, "detail": detail})

    def add_load(self, label: str, load: dict[str, Any]) -> None:
        """Keep a load run's latency CDF and throughput for the plot."""
        self.latency_cdf[f"{label} c={load['concurrency']}"] = load["cdf_ms"]
        self.throughput.setdefault(label, {})[str(load["concurrency"])] = load["throughput"]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form written to latest.json."""
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "elapsed_s": round(self.elapsed_s, 3),
            "load_average": self.load_average,
            "figures": self.figures,
            "targets": self.targets,
            "latency_cdf_ms": self.latency_cdf,
            "throughput": self.throughput,
            "notes": self.notes,
        }


# --- load generation ----------------------------------------------------------------------


def latency_summary(latencies: Sequence[float]) -> dict[str, Any]:
    """p50/p90/p99/max/mean in ms and a 101-point CDF (percentiles 0..100) for plotting."""
    ordered = sorted(latencies)
    if not ordered:
        return {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "cdf_ms": []}

    def pct(p: float) -> float:
        index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[index] * 1000

    return {
        "count": len(ordered),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": ordered[-1] * 1000,
        "mean_ms": sum(ordered) / len(ordered) * 1000,
        "cdf_ms": [round(pct(p), 4) for p in range(101)],
    }


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (from /proc; 10 ms resolution)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _cpu_snapshot(pids: dict[str, int]) -> dict[str, float | None]:
    snapshot: dict[str, float | None] = {"self": time.process_time()}
    for name, pid in pids.items():
        snapshot[name] = _cpu_seconds(pid)
    return snapshot


async def closed_loop(
    concurrency: int,
    operation: Callable[[int], Awaitable[object]],
    *,
    warmup: float,
    duration: float,
    cpu_pids: dict[str, int] | None = None,
    summarised: bool = True,
) -> dict[str, Any]:
    """Run ``concurrency`` workers, each awaiting ``operation(worker)`` back to back.

    Throughput counts the operations that end inside the measured window;
    latencies, those that also started in it. ``cpu_us_per_op`` is the CPU time
    this process ("self") and each process of ``cpu_pids`` spent in the window per
    operation: unlike latency, it barely moves when other work shares the cores.
    """
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + warmup
    measure_until = measure_from + duration
    latencies: list[float] = []
    completed = 0
    perf = time.perf_counter
    clock = loop.time
    pids = cpu_pids or {}
    snapshots: list[dict[str, float | None]] = []
    loop.call_at(measure_from, lambda: snapshots.append(_cpu_snapshot(pids)))
    window_closed = asyncio.Event()

    def close_window() -> None:
        snapshots.append(_cpu_snapshot(pids))
        window_closed.set()

    loop.call_at(measure_until, close_window)

    async def worker(index: int) -> None:
        nonlocal completed
        while True:
            started_at = clock()
            if started_at >= measure_until:
                return
            t0 = perf()
            await operation(index)
            elapsed = perf() - t0
            ended_at = clock()
            if measure_from <= ended_at <= measure_until:
                completed += 1
                if started_at >= measure_from:
                    latencies.append(elapsed)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    await window_closed.wait()
    cpu_s: dict[str, float | None] = {}
    for name in snapshots[0]:
        before, after = snapshots[0][name], snapshots[1][name]
        cpu_s[name] = after - before if before is not None and after is not None else None
    part = {
        "concurrency": concurrency,
        "samples": latencies,
        "completed": completed,
        "duration": duration,
        "cpu_s": cpu_s,
    }
    return summarise([part]) if summarised else part


def summarise(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge closed-loop runs (rounds of one variant) into one summary."""
    samples = [s for part in parts for s in part["samples"]]
    completed = sum(part["completed"] for part in parts)
    duration = sum(part["duration"] for part in parts)
    summary = latency_summary(samples)
    summary["concurrency"] = parts[0]["concurrency"]
    summary["throughput"] = completed / duration if duration else 0.0
    summary["rounds"] = len(parts)
    cpu: dict[str, float | None] = {}
    for name in parts[0]["cpu_s"]:
        values = [part["cpu_s"].get(name) for part in parts]
        known = [v for v in values if v is not None]
        complete = completed and len(known) == len(values)
        cpu[name] = sum(known) / completed * 1e6 if complete else None
    summary["cpu_us_per_op"] = cpu
    return summary


async def measurement_loop(
    channel: ChildChannel,
    operation: Callable[[int], Awaitable[object]],
    cpu_pids: dict[str, int] | None = None,
) -> None:
    """Serve the orchestrator's {"cmd": "measure", level, warmup, duration} until "stop".

    Lets the orchestrator alternate short rounds between variants that stay up, so
    a burst of outside load hits every variant alike.
    """
    while True:
        command = await channel.recv()
        if command.get("cmd") != "measure":
            return
        part = await closed_loop(
            command["level"],
            operation,
            warmup=command["warmup"],
            duration=command["duration"],
            cpu_pids=cpu_pids,
            summarised=False,
        )
        channel.send({"part": part})


def alternate(
    variants: dict[str, Child],
    levels: Sequence[int],
    profile: Profile,
) -> dict[str, list[dict[str, Any]]]:
    """For each level, ``profile.rounds`` rounds; each round measures every variant once.

    Returns, per variant, one merged summary per level.
    """
    rounds = profile.rounds
    timeout = profile.ready_timeout + profile.warmup + profile.duration + 60
    out: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
    for level in levels:
        parts: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
        for index in range(rounds):
            for label, child in variants.items():
                command = {
                    "cmd": "measure",
                    "level": level,
                    # A full warm-up before the first round, a short one before the others.
                    "warmup": profile.warmup if index == 0 else profile.warmup / rounds,
                    "duration": profile.duration / rounds,
                }
                parts[label].append(child.request(command, timeout)["part"])
        for label in variants:
            out[label].append(summarise(parts[label]))
            log(f"  {label}, {level} in flight: {describe(out[label][-1], 'ops/s')}")
    return out


# --- child processes ----------------------------------------------------------------------


GC_FREEZE_ENV = "MESHSRPC_BENCH_GC_FREEZE"


class ChildChannel:
    """The child's end of the pipe to the orchestrator (pickled dicts both ways)."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn

    def send(self, message: dict[str, Any]) -> None:
        """Send one message to the orchestrator.

        With ``MESHSRPC_BENCH_GC_FREEZE=1`` a child that reports ready first moves every
        object it has (imports, the started server) out of the collector's reach
        (``gc.freeze()``): full collections then scan only what the load creates.
        """
        if message.get("ready") and os.environ.get(GC_FREEZE_ENV):
            gc.collect()
            gc.freeze()
        # uvloop's add_reader (in recv) leaves the pipe non-blocking: a message bigger
        # than the pipe buffer (the latency samples) would be cut short.
        os.set_blocking(self._conn.fileno(), True)
        self._conn.send(message)

    def progress(self, text: str) -> None:
        """A progress line the orchestrator prints on stderr."""
        self.send({"progress": text})

    async def recv(self) -> dict[str, Any]:
        """Wait (without blocking the event loop) for the orchestrator's next message."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = self._conn.fileno()

        def on_readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, on_readable)
        try:
            while not self._conn.poll():
                await ready
                ready = loop.create_future()
        finally:
            loop.remove_reader(fd)
        message: dict[str, Any] = self._conn.recv()
        return message


def _child_main(
    target: Callable[..., Awaitable[None]],
    conn: multiprocessing.connection.Connection,
    core: int | None,
    kwargs: dict[str, Any],
) -> None:
    if core is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {core})
    # Thousands of sockets in one process: use the hard limit of open files.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    channel = ChildChannel(conn)
    # A child with a bool "uvloop" argument runs on that loop; the others follow
    # meshsrpc's switch (MESHSRPC_UVLOOP=1).
    uvloop = kwargs.get("uvloop")
    try:
        run_on_loop(target(channel, **kwargs), uvloop if isinstance(uvloop, bool) else None)
    except NotAvailable as exc:
        conn.send({"not_available": str(exc)})
    except BaseException:
        conn.send({"error": traceback.format_exc()})
    finally:
        conn.close()


def run_on_loop(main: Awaitable[None], uvloop: bool | None) -> None:
    """Run ``main`` on the loop meshsrpc.loops picks (plain asyncio without meshsrpc)."""
    try:
        from meshsrpc.loops import run
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]
        return
    run(main, uvloop=uvloop)  # type: ignore[arg-type]


class ChildError(RuntimeError):
    """A child process raised or died."""


class Child:
    """One benchmark process: ``await target(channel, **kwargs)`` in a fresh interpreter."""

    def __init__(
        self, name: str, target: Callable[..., Awaitable[None]], *, role: str, **kwargs: Any
    ) -> None:
        self.name = name
        self._parent, child_end = _CTX.Pipe()
        core = pinned_core(role)
        self._process = _CTX.Process(
            target=_child_main, args=(target, child_end, core, kwargs), name=name, daemon=True
        )
        self._process.start()
        child_end.close()
        self._profiler = _start_profiler(name, self._process.pid)

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self._process.pid

    def send(self, message: dict[str, Any]) -> None:
        """Send a message to the child."""
        self._parent.send(message)

    def recv(self, timeout: float) -> dict[str, Any]:
        """The child's next non-progress message; progress lines go to stderr."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChildError(f"{self.name}: no answer within {timeout:.0f} s")
            try:
                has_message = self._parent.poll(min(remaining, 0.5))
            except (EOFError, OSError) as exc:
                raise ChildError(f"{self.name}: pipe closed ({exc})") from exc
            if not has_message:
                if not self._process.is_alive() and not self._parent.poll(0):
                    raise ChildError(f"{self.name}: exited with code {self._process.exitcode}")
                continue
            try:
                message: dict[str, Any] = self._parent.recv()
            except EOFError as exc:
                raise ChildError(f"{self.name}: exited with code {self._process.exitcode}") from exc
            if "progress" in message:
                log(f"  {self.name}: {message['progress']}")
                continue
            if "not_available" in message:
                raise NotAvailable(message["not_available"])
            if "error" in message:
                raise ChildError(f"{self.name} failed:\n{message['error']}")
            return message

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a command and wait for its answer."""
        self.send(message)
        return self.recv(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the child to stop, then make sure it is gone."""
        if self._process.is_alive():
            with contextlib.suppress(OSError, BrokenPipeError):
                self._parent.send({"cmd": "stop"})
            self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._parent.close()
        if self._profiler is not None:
            # py-spy writes its output once the target has exited.
            try:
                self._profiler.wait(30)
            except subprocess.TimeoutExpired:
                self._profiler.terminate()


PROFILE_ENV = "MESHSRPC_BENCH_PYSPY"


def _start_profiler(name: str, pid: int | None) -> subprocess.Popen[bytes] | None:
    """With MESHSRPC_BENCH_PYSPY=<dir>, sample the child with py-spy into <dir>/<name>.txt.

    The output is py-spy's "raw" format (collapsed stacks, one per line with a
    count), for bench/hotspots.py to summarise.
    """
    out_dir = os.environ.get(PROFILE_ENV)
    if not out_dir or pid is None:
        return None
    os.makedirs(out_dir, exist_ok=True)
    py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    slug = "".join(c if c.isalnum() else "_" for c in name)
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
         "--output", os.path.join(out_dir, f"{slug}.txt")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


@contextlib.contextmanager
def children(*items: Child) -> Iterator[list[Child]]:
    """Stop every child on the way out, whatever happened."""
    started = list(items)
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()


def can_pin() -> bool:
    """True when at least two cores are available (and MESHSRPC_BENCH_NO_PIN is not set)."""
    if os.environ.get("MESHSRPC_BENCH_NO_PIN"):
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):
        return False


def pinned_core(role: str) -> int | None:
    """The core a process of this role is pinned to ("server" / "load"), or None."""
    if not can_pin():
        return None
    cores = sorted(os.sched_getaffinity(0))
    return cores[SERVER_CORE] if role == "server" else cores[LOAD_CORE]


def pin_pid(pid: int | None, role: str) -> None:
    """Pin a process we did not spawn ourselves (Redis) like a child of that role."""
    core = pinned_core(role)
    if pid is not None and core is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {core})


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- machine and versions -----------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What ran the benchmarks."""
    cpu_model = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "memory_total_bytes": memory,
        "pinning": (
            {"server_core": pinned_core("server"), "load_core": pinned_core("load")}
            if can_pin()
            else None
        ),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gc_frozen_after_start": bool(os.environ.get(GC_FREEZE_ENV)),
    }


def package_versions() -> dict[str, str | None]:
    """Versions of meshsrpc, the packages it is measured against, and Redis."""
    from importlib.metadata import PackageNotFoundError, version

    names = [
        "meshsrpc",
        "betterproto2",
        "protobuf",
        "websockets",
        "redis",
        "hiredis",
        "python-socketio",
        "python-engineio",
        "aiohttp",
        "matplotlib",
    ]
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    versions["git_commit"] = _git_commit()
    try:
        from meshsrpc.redis_server import find_redis_server_binary

        binary = find_redis_server_binary()
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        versions["redis_server"] = out.stdout.strip() or None
    except (FileNotFoundError, OSError, subprocess.SubprocessError):
        versions["redis_server"] = None
    return versions


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@contextlib.contextmanager
def private_redis() -> Iterator[Any]:
    """A private Redis for one benchmark, pinned with the servers; closed afterwards."""
    from meshsrpc.redis_server import RedisServer

    server = RedisServer().start()
    pin_pid(server.pid, "server")
    try:
        yield server
    finally:
        server.close()


def describe(result: dict[str, Any], unit: str) -> str:
    """``"1234 req/s, p50 0.456 ms"`` for a progress line (p50 "-" when nothing completed)."""
    p50 = result.get("p50_ms")
    return f"{result['throughput']:.0f} {unit}, p50 " + (f"{p50:.3f} ms" if p50 else "-")


def times(ratio: float | None) -> str:
    """``"1.23x"``, or ``"-"`` when there is no ratio."""
    return "-" if ratio is None else f"{ratio:.2f}x"
