"""Reading the documentation pages: their sections, code blocks and local links."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from devtools.paths import REPO_ROOT

__all__ = [
    "DOCS",
    "PAGES",
    "ROOT",
    "Block",
    "broken_links",
    "code_blocks",
    "headings",
    "section",
    "slug",
]

ROOT = REPO_ROOT
DOCS = ROOT / "docs"
PAGES = (ROOT / "README.md", *sorted(DOCS.glob("*.md")), ROOT / "helm" / "meshchat" / "README.md")

_HEADING = re.compile(r"^(#{1,6}) (.+)$")
_FENCE = re.compile(r"^```(\S*)\s*$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language tag, the heading it is under, and its text."""

    language: str
    heading: str
    text: str


def _prose_and_blocks(text: str) -> tuple[list[tuple[int, str]], list[Block]]:
    """The lines outside code fences (numbered from 1) and the fenced blocks."""
    prose: list[tuple[int, str]] = []
    blocks: list[Block] = []
    heading = ""
    fence: str | None = None
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence, body = opening.group(1), []
        elif fence is not None and line.rstrip() == "```":
            blocks.append(Block(fence, heading, "".join(f"{row}\n" for row in body)))
            fence = None
        elif fence is not None:
            body.append(line)
        else:
            prose.append((number, line))
            if match := _HEADING.match(line):
                heading = match.group(2)
    return prose, blocks


def headings(text: str) -> list[str]:
    """The headings of a Markdown text, without their #s, skipping code blocks."""
    prose, _ = _prose_and_blocks(text)
    return [match.group(2) for _, line in prose if (match := _HEADING.match(line))]


def code_blocks(page: Path, language: str = "sh") -> list[Block]:
    """Every fenced block of ``page`` tagged ``language`` ("" for untagged), in order."""
    _, blocks = _prose_and_blocks(page.read_text())
    return [block for block in blocks if block.language == language]


def section(page: Path, heading: str, language: str = "sh") -> list[str]:
    """The ``language`` blocks directly under ``heading`` (up to the next heading of any level)."""
    text = page.read_text()
    assert heading in headings(text), f"no heading {heading!r} in {page.relative_to(ROOT)}"
    return [block.text for block in code_blocks(page, language) if block.heading == heading]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in headings(page.read_text()):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        anchors.add(base if count == 0 else f"{base}-{count}")
    return anchors


def broken_links(page: Path) -> list[str]:
    """Every link of ``page`` to a local file or anchor that does not resolve, with its line."""
    prose, _ = _prose_and_blocks(page.read_text())
    lines = dict(prose)
    text = "\n".join(
        _INLINE_CODE.sub("", lines.get(n, "")) for n in range(1, max(lines, default=0) + 1)
    )
    problems = []
    for match in _LINK.finditer(text):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        where = f"{page.name}:{text.count(chr(10), 0, match.start(1)) + 1}: {target}"
        if not linked.exists():
            problems.append(f"{where}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in _anchors(linked)):
            problems.append(f"{where}: no such heading")
    return problems
