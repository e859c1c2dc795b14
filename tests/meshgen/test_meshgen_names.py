"""Names that clash, recursive payloads and keyword keys: generated code imports and runs."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest
from meshgen.generate import Request, generate
from meshgen.output import write_files
from meshgen_helpers import INCLUDE, PROTOS, REPO


@pytest.fixture(scope="module")
def tricky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    root = tmp_path_factory.mktemp("names")
    request = Request(str(REPO / PROTOS / "tricky.proto"), (str(REPO / INCLUDE),))
    write_files(str(root / "meshgen_tricky_app"), generate(request))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        yield importlib.import_module("meshgen_tricky_app.tricky_srpc")


def test_clashing_message_names_are_aliased(tricky: ModuleType) -> None:
    other = importlib.import_module("meshgen_tricky_app.tricky.other")
    own = importlib.import_module("meshgen_tricky_app.tricky.v1")
    assert tricky.TrickyOtherEchoRequest is other.EchoRequest
    assert tricky.EchoRequest is own.EchoRequest
    assert tricky.TrickyV1Any is own.Any  # `Any` is typing's name in the module
    assert tricky.Any is not own.Any


def test_keyword_keys_and_recursion(tricky: ModuleType) -> None:
    assert tricky.WordDict.__required_keys__ == frozenset({"from", "synonyms"})
    assert tricky.WordDict.__optional_keys__ == frozenset({"class"})
    assert tricky.NodeDict.__required_keys__ == frozenset({"name", "children", "byName"})
    assert set(tricky.TrickyBroadcasts.__annotations__) == {"tree", "word"}


async def test_wrong_request_class_raises_type_error_before_sending(tricky: ModuleType) -> None:
    own = importlib.import_module("meshgen_tricky_app.tricky.v1")
    # Never connected: a TypeError here proves the check runs before any I/O.
    client = tricky.TrickySrpcClient("ws://127.0.0.1:9/srpc", "c1")
    with pytest.raises(TypeError, match="uOther expects a EchoRequest request, got EchoRequest"):
        await client.invoke_u_other(own.EchoRequest(text="wrong package"))
    with pytest.raises(TypeError, match="expects a Any request, got SrpcStream"):
        await client.invoke("uAny", own.SrpcStream())
    with pytest.raises(ValueError, match="unknown upstream call 'uNope'"):
        await client.invoke("uNope", own.Any())
