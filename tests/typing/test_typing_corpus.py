"""The typing promises of GENERATOR.md, checked by mypy --strict over a corpus of small apps.

Programs named ok_*.py must type-check cleanly. Programs named err_*.py each hold one
deliberate mistake, marked `# E: <error code>` on its line: mypy must report exactly that
line (and nothing else) in that file. mypy runs once, over the generated packages and
every program, through its API.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from mypy import api as mypy_api

REPO = Path(__file__).resolve().parents[2]
CASES = Path(__file__).parent / "cases"
GOLDEN = REPO / "tests" / "golden"
_ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*)$")
_MARK = re.compile(r"#\s*E:\s*(?P<code>[\w-]*)")


@dataclass(frozen=True)
class MypyResult:
    """Errors per file name (the cases and the generated packages)."""

    errors: dict[str, list[tuple[int, str]]]
    report: str


@pytest.fixture(scope="session")
def mypy_result(tmp_path_factory: pytest.TempPathFactory) -> MypyResult:
    # The golden packages are the generator's checked-in output (test_meshgen_golden
    # proves they are current); echo_only (no downstream calls, no broadcasts, no
    # package) and tricky (clashing names, recursion, keyword keys) are generated fresh,
    # with their gateways.
    work = tmp_path_factory.mktemp("typing")
    for proto, extra in (("echo_only", []), ("tricky", ["-I", "tests/meshgen/protos/include"])):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "meshgen",
                f"tests/meshgen/protos/{proto}.proto",
                "-o",
                str(work / proto),
                *extra,
                # with the gateway: its generated code must be as clean
                "--gateway",
            ],
            cwd=REPO,
            check=True,
        )
    config = work / "mypy.ini"
    config.write_text(f"[mypy]\nstrict = True\nmypy_path = {REPO / 'runtime'}:{GOLDEN}:{work}\n")
    cases = sorted(str(p) for p in CASES.glob("*.py"))
    stdout, stderr, _ = mypy_api.run(
        [
            "--config-file",
            str(config),
            "--cache-dir",
            str(work / ".mypy_cache"),
            "--show-error-codes",
            "--no-error-summary",
            "--hide-error-context",
            str(GOLDEN / "srpc_test"),
            str(GOLDEN / "lobby"),
            str(GOLDEN / "srpc_test_gateway"),
            str(GOLDEN / "lobby_gateway"),
            str(work / "echo_only"),
            str(work / "tricky"),
            *cases,
        ]
    )
    assert not stderr, stderr
    errors: dict[str, list[tuple[int, str]]] = {}
    for line in stdout.splitlines():
        match = _ERROR_LINE.match(line)
        if match:
            path = Path(match["file"])
            key = path.name if path.resolve().parent == CASES.resolve() else match["file"]
            errors.setdefault(key, []).append((int(match["line"]), match["message"]))
    return MypyResult(errors, stdout)


def _expected(case: Path) -> dict[int, str]:
    marks = {}
    for number, line in enumerate(case.read_text().splitlines(), 1):
        mark = _MARK.search(line)
        if mark:
            marks[number] = mark["code"]
    return marks


def test_generated_packages_pass_mypy_strict(mypy_result: MypyResult) -> None:
    generated = {
        f: e
        for f, e in mypy_result.errors.items()
        if "golden/" in f or "echo_only/" in f or "tricky/" in f
    }
    assert generated == {}, mypy_result.report


def test_generated_packages_have_no_type_ignore() -> None:
    for path in GOLDEN.rglob("*.py"):
        assert "type: ignore" not in path.read_text(), path


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.glob("ok_*.py")))
def test_correct_program_passes(case: str, mypy_result: MypyResult) -> None:
    assert mypy_result.errors.get(case, []) == [], mypy_result.report


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.glob("err_*.py")))
def test_mistake_is_reported_on_its_line(case: str, mypy_result: MypyResult) -> None:
    expected = _expected(CASES / case)
    assert len(expected) == 1, "each err_ program holds exactly one marked mistake"
    ((line, code),) = expected.items()
    reported = mypy_result.errors.get(case, [])
    assert reported and {n for n, _ in reported} == {line}, reported
    assert any(f"[{code}]" in message for _, message in reported), reported


def test_corpus_covers_every_typed_promise() -> None:
    # GENERATOR.md's list: wrong request (method and Literal), unknown prefix, wrong
    # response use, handler request/return, payload missing/extra/wrong value, unknown type.
    names = {p.stem for p in CASES.glob("err_*.py")}
    for promised in (
        "err_invoke_method_wrong_request",
        "err_invoke_literal_wrong_request",
        "err_invoke_unknown_prefix",
        "err_response_wrong_type",
        "err_response_wrong_attribute",
        "err_handler_wrong_request",
        "err_handler_wrong_return",
        "err_broadcast_missing_key",
        "err_broadcast_extra_key",
        "err_broadcast_wrong_value_type",
        "err_broadcast_unknown_type",
        # issue 15: typed options, partial metadata updates, typed metadata values
        "err_option_misspelled",
        "err_option_wrong_type",
        "err_metadata_update_wrong_value_type",
        "err_client_meta_wrong_value_type",
        # the gateway's grpclib stub (meshgen --gateway)
        "err_gateway_stub_wrong_request",
        "err_gateway_request_wrong_payload",
        "err_gateway_response_wrong_type",
    ):
        assert promised in names
    assert len(names) >= 12
