"""The command line: options, --check, exit codes (0 ok, 1 stale, 2 bad input)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from meshgen import __version__
from meshgen.cli import main
from meshgen_helpers import GOLDEN_CASES, REPO, Run, app_proto, line_of

SRPC_TEST = GOLDEN_CASES["srpc_test"]
ECHO_CLIENT = "    EchoRequest uEchoRequest = 1000;"
ECHO_SERVER = "    EchoResponse uEchoResponse = 1000;"


def test_version_and_help(meshgen: Callable[..., Run]) -> None:
    version = meshgen("--version")
    assert version.code == 0
    assert version.out.strip() == f"meshgen {__version__}"
    help_ = meshgen("--help")
    assert help_.code == 0
    assert "example:" in help_.out
    assert "meshgen protos/app.proto -o generated/" in help_.out
    for option in ("-I", "--name", "--check", "--client-message", "--broadcasts", "--client-meta"):
        assert option in help_.out


def test_usage_error_is_exit_2(meshgen: Callable[..., Run]) -> None:
    assert meshgen("app.proto").code == 2  # no -o


def test_python_dash_m_meshgen_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meshgen", *SRPC_TEST, "-o", str(tmp_path / "out"), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1  # nothing generated there yet: every file is stale
    assert "srpc_test_srpc.py" in result.stdout


def test_check_is_clean_after_generating(meshgen: Callable[..., Run], tmp_path: Path) -> None:
    out = str(tmp_path / "generated")
    assert meshgen(*SRPC_TEST, "-o", out).code == 0
    check = meshgen(*SRPC_TEST, "-o", out, "--check")
    assert (check.code, check.out, check.err) == (0, "", "")


def test_check_lists_stale_and_missing_files_and_writes_nothing(
    meshgen: Callable[..., Run], tmp_path: Path
) -> None:
    out = tmp_path / "generated"
    assert meshgen(*SRPC_TEST, "-o", str(out)).code == 0
    module = out / "srpc_test_srpc.py"
    module.write_text(module.read_text() + "# edited by hand\n")
    (out / "sgnl24" / "TestRpc" / "__init__.py").unlink()
    orphan = out / "old_srpc.py"
    orphan.write_text((out / "message_pool.py").read_text())  # our header, same proto
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    check = meshgen(*SRPC_TEST, "-o", str(out), "--check")

    assert check.code == 1
    listed = [line.strip() for line in check.out.splitlines()[1:]]
    assert listed == [
        str(out / "old_srpc.py"),
        str(out / "sgnl24/TestRpc/__init__.py"),
        str(out / "srpc_test_srpc.py"),
    ]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    # Generating again fixes everything, orphan included.
    assert meshgen(*SRPC_TEST, "-o", str(out)).code == 0
    assert not orphan.exists()
    assert meshgen(*SRPC_TEST, "-o", str(out), "--check").code == 0


def test_bad_input_leaves_existing_output_untouched(
    meshgen: Callable[..., Run], tmp_path: Path
) -> None:
    out = tmp_path / "generated"
    proto = tmp_path / "app.proto"
    proto.write_text(app_proto(ECHO_CLIENT, ECHO_SERVER))
    assert meshgen(str(proto), "-o", str(out)).code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    proto.write_text(app_proto(ECHO_CLIENT + "\n    EchoRequest uLostRequest = 1001;", ECHO_SERVER))
    assert meshgen(str(proto), "-o", str(out)).code == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_every_problem_is_reported_at_once(meshgen: Callable[..., Run], tmp_path: Path) -> None:
    text = app_proto(
        ECHO_CLIENT + "\n    EchoRequest uLostRequest = 1001;\n    string uTextRequest = 1002;",
        ECHO_SERVER + "\n    EchoResponse dOrphanResponse = 2000;",
        "message Broadcasts { string shout = 1; }\n",
    )
    proto = tmp_path / "app.proto"
    proto.write_text(text)
    run = meshgen(str(proto), "-o", str(tmp_path / "out"))
    assert run.code == 2
    for marker, field in (
        ("uLostRequest = 1001", "ClientMessage.uLostRequest"),
        ("uTextRequest = 1002", "ClientMessage.uTextRequest"),
        ("dOrphanResponse = 2000", "ServerMessage.dOrphanResponse"),
        ("string shout = 1", "Broadcasts.shout"),
    ):
        assert f"{proto}:{line_of(text, marker)}: {field}:" in run.err, run.err
    assert len([line for line in run.err.splitlines() if "error:" in line]) == 4


def test_container_flags_and_name(meshgen: Callable[..., Run], tmp_path: Path) -> None:
    text = app_proto(
        ECHO_CLIENT,
        ECHO_SERVER,
        "message Hello { string text = 1; }\n"
        "message Shouts { Hello hello = 1; }\n"
        "message Who { string nick = 1; }\n",
        client_name="Up",
        server_name="Down",
    )
    proto = tmp_path / "chat-room.proto"
    proto.write_text(text)
    out = tmp_path / "out"
    args = ["--client-message", "Up", "--server-message", "Down"]
    run = meshgen(
        str(proto), "-o", str(out), *args, "--broadcasts", "Shouts", "--client-meta", "Who"
    )
    assert run.code == 0, run.err
    module = (out / "chat_room_srpc.py").read_text()
    assert "class ChatRoomMeshSrpcServer(MeshSrpcServer[Up, Down, WhoDict]):" in module
    assert "class ChatRoomBroadcasts(TypedDict):" in module
    assert meshgen(str(proto), "-o", str(tmp_path / "o2"), *args, "--name", "Chat").code == 0
    assert (
        "class ChatSrpcClient(SrpcClient[Up, Down]):"
        in (tmp_path / "o2/chat_room_srpc.py").read_text()
    )

    # A container named on the command line must exist.
    missing = meshgen(str(proto), "-o", str(tmp_path / "o3"), *args, "--broadcasts", "Nope")
    assert missing.code == 2
    assert f"{proto}:{line_of(text, 'package demo.App;')}: Nope: no message Nope" in missing.err
    assert meshgen(str(proto), "-o", str(tmp_path / "o4"), *args, "--name", "not-a-name").code == 2
    assert meshgen(str(tmp_path / "nope.proto"), "-o", str(tmp_path / "o5")).code == 2
    assert not any((tmp_path / d).exists() for d in ("o3", "o4", "o5"))


def test_success_prints_one_summary_line(meshgen: Callable[..., Run], tmp_path: Path) -> None:
    out = str(tmp_path / "generated")
    first = meshgen(*SRPC_TEST, "-o", out)
    assert first.code == 0 and first.err == ""
    (line,) = first.out.splitlines()
    assert line.startswith(f"meshgen: wrote 6 file(s) to {out} (0 unchanged): srpc_test_srpc.py")
    assert "9 call(s) (6 upstream, 3 downstream), 2 broadcast(s)" in line
    again = meshgen(*SRPC_TEST, "-o", out)
    assert "wrote 0 file(s)" in again.out and "(6 unchanged)" in again.out


@pytest.mark.parametrize("spelling", ["absolute", "dot", "trailing slash", "dot-dot"])
def test_any_spelling_of_the_protos_own_folder_works_as_include(
    spelling: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `meshgen app.proto -I "$PWD"` from the proto's folder: protoc alone calls the
    # input "shadowed" by itself.
    folder = tmp_path / "protos"
    folder.mkdir()
    (folder / "app.proto").write_text(app_proto(ECHO_CLIENT, ECHO_SERVER))
    monkeypatch.chdir(folder)
    include = {
        "absolute": str(folder),
        "dot": ".",
        "trailing slash": f"{folder}/",
        "dot-dot": "../protos",
    }[spelling]
    assert main(["app.proto", "-I", include, "-o", str(tmp_path / "out")]) == 0, (
        capsys.readouterr().err
    )
    assert (tmp_path / "out" / "app_srpc.py").is_file()
