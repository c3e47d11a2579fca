"""Every relative link in README.md, docs/ and the notebooks resolves: the file exists, and a #anchor names a
heading of it (GitHub's anchors: lower case, punctuation dropped, spaces to hyphens, -1, -2 for repeats)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), ROOT / "notebooks" / "README.md",
                *(ROOT / "notebooks").glob("[0-9][0-9]_*.py")])
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans, where a [..](..) is not a link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())      # a link's text only
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The #anchors a markdown file defines: its headings (outside code) and explicit <a id/name> tags."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    seen: dict[str, int] = {}
    found = set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(path.read_text())) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_the_checker_knows_github_anchors():
    assert slug("Architectures: `--arch mlp` and `--arch conv`") == "architectures---arch-mlp-and---arch-conv"
    assert slug("The paper's table: Burda et al.'s MNIST VAE") == "the-papers-table-burda-et-als-mnist-vae"
    assert slug("Gaussian negative log-likelihood, fixed variance") == "gaussian-negative-log-likelihood-fixed-variance"
    assert links(ROOT / "README.md"), "the README links nothing: the link pattern is broken"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        file_part, _, anchor = target.partition("#")
        dest = page if not file_part else (page.parent / file_part).resolve()
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: {dest.relative_to(ROOT)} has no heading #{anchor}")
        elif anchor and dest.suffix != ".md":
            broken.append(f"{target}: an anchor into a file that is not markdown")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)
