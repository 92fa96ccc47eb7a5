"""The documentation's Python examples run as written, and its relative links resolve.

Examples: the README's "Ten lines" and the blocks of docs/getting-started.md ("Explaining a
class"), docs/methods/relevance.md and docs/methods/layer.md, each identified by its page and
the heading it sits under (the python blocks between that heading and the next one).

Links: every relative Markdown link or image in README.md and docs/**/*.md (not the build output
``docs/_build`` or the generated ``docs/notebooks``) points to a file that exists, and a
``#anchor`` on a link to a Markdown file matches a heading of that file, slugged as GitHub and
MyST (``myst_heading_anchors``) do.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _lines_outside_fences(text: str) -> list[tuple[str, bool]]:
    """Each line of ``text`` with whether it lies inside a fenced code block (fences included)."""
    out, fence = [], None
    for line in text.splitlines():
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)[0] * 3
            out.append((line, True))
        elif fence is not None:
            out.append((line, True))
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
        else:
            out.append((line, False))
    return out


def _headings(text: str) -> list[str]:
    """The headings of a Markdown page, outside code blocks, in order."""
    return [m.group(2) for line, code in _lines_outside_fences(text)
            if not code and (m := _HEADING.match(line))]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading (MyST's default slug function is the same)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # drop punctuation (backticks too), keep - and _
    return text.replace(" ", "-")


def _anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for h in _headings(text):
        s = _slug(h)
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def _python_blocks(page: Path, heading: str) -> list[str]:
    """The python blocks between the heading ``heading`` of ``page`` and the next heading."""
    blocks, current, inside, block = [], None, False, None
    for line, code in _lines_outside_fences(page.read_text()):
        if not code:
            m = _HEADING.match(line)
            if m:
                current = m.group(2)
            continue
        if not inside:  # an opening fence
            inside = True
            block = [] if current == heading and line.strip().startswith("```python") else None
        elif line.strip().startswith("```") and line.strip().strip("`") == "":
            inside = False
            if block is not None:
                blocks.append("\n".join(block) + "\n")
        elif block is not None:
            block.append(line)
    return blocks


EXAMPLES = [
    ("README.md", "Ten lines"),
    ("docs/getting-started.md", "Explaining a class"),
    ("docs/methods/relevance.md", "LRP, AttnLRP and DeepLIFT"),
    ("docs/methods/layer.md", "Attribution at an intermediate"),
]


@pytest.mark.parametrize(("page", "heading"), EXAMPLES, ids=[h for _, h in EXAMPLES])
def test_docs_examples_run(page, heading):
    blocks = _python_blocks(ROOT / page, heading)
    assert blocks, f"no python block under '{heading}' in {page}"
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small example layers warn that q lets few units pass
        for block in blocks:
            exec(compile(block, f"{page} ({heading})", "exec"), namespace)
    if heading == "Explaining a class":  # the asserts ran; check what they cover
        assert namespace["maps"].shape == (8, 10) and namespace["sg"].shape == (8, 10)


# ------------------------------------------------------------------------------------ links

_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _pages() -> list[Path]:
    skip = (DOCS / "_build", DOCS / "notebooks")
    docs = [p for p in sorted(DOCS.rglob("*.md")) if not any(s in p.parents for s in skip)]
    return [ROOT / "README.md", *docs]


def _links(text: str) -> list[str]:
    """Link and image targets outside code blocks and inline code."""
    out = []
    for line, code in _lines_outside_fences(text):
        if not code:
            out += _LINK.findall(re.sub(r"`[^`]*`", "", line))
    return out


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if ROOT in path.parents else path


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` that do not resolve, each with the reason."""
    bad = []
    text = page.read_text()
    for target in _links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, mailto:...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: {_shown(dest)} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
            bad.append(f"{target}: no heading '#{anchor}' in {_shown(dest)}")
    return bad


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert broken_links(page) == []


def test_link_check_catches_broken_links(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading: with punctuation\n")
    page.write_text(
        "# Page\n\n[ok](other.md) [ok](other.md#a-code-heading-with-punctuation) [ok](#page)\n"
        "[missing](nothere.md) [bad anchor](other.md#nope) ![img](figures/none.png)\n"
        "`[in code](ignored.md)`\n\n```md\n[in a block](ignored.md)\n```\n")
    bad = broken_links(page)
    assert len(bad) == 3, bad
    assert any("nothere.md" in b for b in bad) and any("#nope" in b for b in bad)
    assert any("none.png" in b for b in bad)
