"""Constants and small helpers shared by meshgen's tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTOS = "tests/meshgen/protos"
INCLUDE = f"{PROTOS}/include"

# (golden folder, meshgen arguments) — the same commands as `make golden`.
GOLDEN_CASES = {
    "srpc_test": [f"{PROTOS}/srpc_test.proto"],
    "lobby": [f"{PROTOS}/lobby.proto", "-I", INCLUDE],
}


@dataclass
class Run:
    """The outcome of one meshgen command."""

    code: int
    out: str
    err: str
