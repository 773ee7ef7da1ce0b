"""Every Python example in the documentation runs, as it is written, against the local stack.

The documentation is README.md and docs/*.md.  Each fenced block tagged ``python``
is a complete script: it is written to a file and run with this interpreter in a
child process, from the repository's root, and must exit 0.  Blocks that are not
meant to run are tagged otherwise (``text``, ``sh``, ``json``).

The script's lines keep their line numbers in the Markdown file (blank lines
stand in for the text above the block), so a traceback points at the page.
An example that reads the seeded items says so with the command that makes
them, ``python -m app seed``; it then runs after the ``seeded`` fixture.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TIMEOUT_S = 120
SEED_MARK = "python -m app seed"
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")


@dataclass(frozen=True)
class Example:
    page: Path
    line: int       # the line of the block's first line of code (1-based)
    index: int      # the block's position among the page's python blocks (1-based)
    code: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def python_blocks(page: Path) -> list[Example]:
    """The fenced blocks tagged ``python`` in a Markdown page, with where each starts."""
    found: list[Example] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            body.append(lines[j])
            j += 1
        if info == "python":
            found.append(Example(page, i + 2, len(found) + 1, "\n".join(body) + "\n"))
        i = j + 1
    return found


def _closes(line: str, fence: str) -> bool:
    """A closing fence: the opening's character, at least as many times, and nothing else."""
    text = line.strip()
    return text.startswith(fence) and not text.strip(fence[0])


EXAMPLES = [example for page in PAGES if page.exists() for example in python_blocks(page)]


def test_the_documentation_has_python_examples() -> None:
    assert EXAMPLES, f"no ```python block in {', '.join(str(p.relative_to(ROOT)) for p in PAGES)}"


@pytest.mark.timeout(TIMEOUT_S + 60)
@pytest.mark.parametrize("example", EXAMPLES or [None], ids=[e.name for e in EXAMPLES] or ["none-found"])
def test_example_runs(example: Example | None, stack: None, request: pytest.FixtureRequest,
                      tmp_path: Path) -> None:
    if example is None:
        pytest.fail("no ```python block found in README.md or docs/*.md")
    if SEED_MARK in example.code:
        request.getfixturevalue("seeded")
    script = tmp_path / f"{example.page.stem}_line{example.line}.py"
    script.write_text("\n" * (example.line - 1) + example.code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{example.name} (python block {example.index} of its page) ran over {TIMEOUT_S} s\n"
                    f"--- stdout ---\n{_text(exc.stdout)}\n--- stderr ---\n{_text(exc.stderr)}")
    assert done.returncode == 0, (
        f"{example.name} (python block {example.index} of its page) exited {done.returncode}\n"
        f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}")


def _text(output: str | bytes | None) -> str:
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output
