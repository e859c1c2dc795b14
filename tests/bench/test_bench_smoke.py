"""`python -m bench --smoke`: every benchmark runs briefly and the results are well formed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report
from bench.benchmarks import BENCHMARKS

ROOT = Path(__file__).resolve().parents[2]


# About a minute alone; more beside the rest of the suite on its workers.
@pytest.mark.timeout(400)
def test_smoke_profile_writes_well_formed_results(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "[bench" in proc.stderr  # progress lines while it runs

    results = json.loads((tmp_path / "latest.json").read_text())
    assert report.validate(results) == []
    assert results["profile"] == "smoke"
    names = {bench["name"] for bench in results["benchmarks"]}
    assert {name for name, _ in BENCHMARKS} <= names
    for bench in results["benchmarks"]:
        # A missing meshsrpc part is reported, never a crash.
        assert bench["status"] in ("ok", "not available"), bench
    codec = next(b for b in results["benchmarks"] if b["name"] == "codec")
    assert codec["status"] == "ok"
    assert all(fig["ratio"] > 0 for fig in codec["figures"])

    markdown = (tmp_path / "latest.md").read_text()
    assert markdown.startswith("# meshsrpc benchmarks (smoke profile)")
    assert "| benchmark | figure |" in markdown
    assert (tmp_path / "latest.png").read_bytes().startswith(b"\x89PNG")


def test_validate_flags_a_malformed_document() -> None:
    assert report.validate({"schema": "nope", "benchmarks": [{"status": "weird"}]})
