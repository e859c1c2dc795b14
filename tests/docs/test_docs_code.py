"""Every ```python block in docs/ passes mypy --strict, as a reader would paste it.

A block may be preceded (directly) by a hidden HTML comment holding the context it
assumes, e.g. the server it talks to:

    <!-- context
    from generated.presence_srpc import PresenceMeshSrpcServer
    server: PresenceMeshSrpcServer
    -->

Top-level ``await`` is allowed (the blocks are fragments of an async program);
everything else is strict. ``generated`` is examples/presence/generated, the
presence app's meshgen output the docs use as their example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from mypy import api as mypy_api

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
_BLOCK = re.compile(
    r"(?:<!-- context\n(?P<context>.*?)-->\n)?^```python\n(?P<code>.*?)^```$",
    re.DOTALL | re.MULTILINE,
)
_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*)$")


@dataclass(frozen=True)
class Block:
    """One python block: where it is in the docs and the module that checks it."""

    doc: str
    line: int  # of the block's first code line in the doc
    context: str
    code: str

    @property
    def module(self) -> str:
        return f"doc_{Path(self.doc).stem}_{self.line}"

    def source(self) -> tuple[str, int]:
        """The module text, and the module line of the block's first code line."""
        head = "from __future__ import annotations\n\n" + self.context
        return head + self.code, head.count("\n") + 1


def _blocks() -> list[Block]:
    blocks = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code")) + 1
            blocks.append(Block(path.name, line, match["context"] or "", match["code"]))
    return blocks


BLOCKS = _blocks()


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy --strict over every block at once: errors by block module, at doc lines."""
    work = tmp_path_factory.mktemp("docs")
    offsets = {}
    for block in BLOCKS:
        text, first = block.source()
        (work / f"{block.module}.py").write_text(text)
        offsets[block.module] = (block, first)
    config = work / "mypy.ini"
    config.write_text(
        "[mypy]\nstrict = True\ndisable_error_code = top-level-await\n"
        f"mypy_path = {REPO / 'runtime'}:{REPO / 'examples' / 'presence'}\n"
    )
    stdout, stderr, _ = mypy_api.run(
        [
            "--config-file",
            str(config),
            "--cache-dir",
            str(work / ".mypy_cache"),
            "--show-error-codes",
            "--no-error-summary",
            *(str(work / f"{b.module}.py") for b in BLOCKS),
        ]
    )
    assert not stderr, stderr
    errors: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        match = _ERROR.match(line)
        if not match:
            continue
        module = Path(match["file"]).stem
        block, first = offsets[module]
        at = block.line + int(match["line"]) - first
        where = f"docs/{block.doc}:{at}" if at >= block.line else f"context of {module}"
        errors.setdefault(module, []).append(f"{where}: {match['message']}")
    return errors


def test_the_docs_have_python_blocks() -> None:
    assert {b.doc for b in BLOCKS} >= {"api.md", "configuration.md", "generator.md"}
    assert len(BLOCKS) >= 15


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.doc}:{b.line}" for b in BLOCKS])
def test_block_passes_mypy_strict(block: Block, mypy_errors: dict[str, list[str]]) -> None:
    assert mypy_errors.get(block.module, []) == [], "\n".join(mypy_errors[block.module])
