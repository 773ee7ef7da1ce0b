"""Every relative link and image in README.md and docs/*.md points at a file that exists, and at a heading on it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def prose(page: Path) -> list[str]:
    """The page's lines outside fenced code blocks."""
    lines, fence = [], ""
    for line in page.read_text(encoding="utf-8").splitlines():
        opening = _FENCE.match(line)
        if fence:
            if opening and line.strip() == opening[1] and opening[1].startswith(fence):
                fence = ""
            continue
        if opening:
            fence = opening[1]
            continue
        lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes for the page's headings: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in prose(page):
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading[1].strip().lower())
            found.add(text.replace(" ", "-"))
    return found


def links() -> list[tuple[Path, str]]:
    return [(page, target) for page in PAGES for line in prose(page) for target in _LINK.findall(line)
            if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize(("page", "target"), links(), ids=[f"{p.relative_to(ROOT)}->{t}" for p, t in links()])
def test_relative_link_resolves(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.relative_to(ROOT)}: {target} names no file"
    if anchor:
        assert dest.suffix == ".md", f"{page.relative_to(ROOT)}: {target}: an anchor on a file that is not a page"
        assert anchor in anchors(dest), f"{page.relative_to(ROOT)}: {target}: no such heading in {dest.name}"


def test_links_are_found() -> None:
    assert len(links()) > 10
