"""The README's quick start: the files it shows are the files that run, and they run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from meshsrpc.redis_server import RedisServer, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = REPO_ROOT / "examples" / "quickstart"
MESHGEN = Path(sys.executable).with_name("meshgen")

EXPECTED_OUTPUT = [
    "hello alice, from node 1",
    "client got: hi",
    "server got: DPokeResponse(ok=True)",
]


@pytest.mark.parametrize("name", ["hello.proto", "app.py"])
def test_readme_shows_the_quickstart_files_verbatim(name: str) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert (QUICKSTART / name).read_text() in readme


def test_readme_shows_the_output_the_quickstart_prints() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "$ python app.py\n" + "\n".join(EXPECTED_OUTPUT) + "\n" in readme


def _run_quickstart(tmp_path: Path, env: dict[str, str]) -> list[str]:
    # Exactly the README's steps, in a fresh folder: copy, meshgen, python app.py.
    for name in ("hello.proto", "app.py"):
        shutil.copy(QUICKSTART / name, tmp_path / name)
    subprocess.run(
        [str(MESHGEN), "hello.proto", "-o", "generated"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    done = subprocess.run(
        [sys.executable, "app.py"],
        cwd=tmp_path,
        env={**_without_redis_vars(os.environ), "PORT": str(free_port()), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _without_redis_vars(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(("MESH_", "REDIS_", "MUTEX_"))}


def test_quickstart_runs_in_process(tmp_path: Path) -> None:
    # No Redis configured at all: the app falls back to memory://hello.
    assert _run_quickstart(tmp_path, {}) == EXPECTED_OUTPUT


def test_quickstart_runs_on_redis(
    tmp_path: Path, redis_server: RedisServer, mesh_prefix: str
) -> None:
    env = {"MESH_REDIS_URL": redis_server.url, "MESH_REDIS_PREFIX": mesh_prefix}
    assert _run_quickstart(tmp_path, env) == EXPECTED_OUTPUT
