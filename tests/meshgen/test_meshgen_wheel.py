"""The built wheel ships the templates, and a non-editable install generates code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from meshgen_helpers import REPO

TEMPLATES = sorted(p.name for p in (REPO / "templates").glob("*.j2"))


def _build_wheel(tmp_path: Path) -> Path:
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources,
    # and the shared tree must stay clean.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("runtime", "generator", "templates"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("meshsrpc-*.whl")
    return wheel


def test_wheel_ships_templates_and_generates(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert TEMPLATES
    for template in TEMPLATES:
        assert f"meshgen/templates/{template}" in names
    assert "meshgen/templates/__init__.py" in names
    assert "meshgen/py.typed" in names

    # Install without dependencies into a folder of its own, then run it from
    # elsewhere: the dependencies come from the current environment, meshgen from
    # the wheel (PYTHONPATH comes before the editable install's finder).
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copy(REPO / "tests/meshgen/protos/echo_only.proto", workdir / "echo_only.proto")
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import meshgen.render as r, meshgen.templates as t; print(r.__file__, t.__file__)",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in where.stdout.split():
        assert line.startswith(str(target)), where.stdout
    result = subprocess.run(
        [sys.executable, "-m", "meshgen", "echo_only.proto", "-o", "generated"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "class EchoOnlySrpcClient(" in (workdir / "generated/echo_only_srpc.py").read_text()
