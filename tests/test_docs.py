"""The documentation: no citation of a design file outside the repository, every relative
link and anchor in README.md and docs/*.md resolves, and the README stays short."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve()
# Split so that this file does not contain the string it looks for (it is excluded anyway).
GONE = "DESIGN" + ".md"
README_MAX_LINES = 250

LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:  # pragma: no cover - no git
        pytest.skip(f"git ls-files failed: {e}")
    files = {ROOT / name for name in out.decode().split("\0") if name}
    files |= set(doc_files())  # new documents count before they are committed
    return sorted(p for p in files if p.resolve() != THIS and p.is_file())


def outside_code(text: str) -> list[str]:
    """The lines of a markdown text that are not inside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = text.replace("*", "")  # emphasis; underscores are word characters and stay
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in outside_code(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(outside_code(path.read_text(encoding="utf-8")), 1):
        line = INLINE_CODE.sub("", line)
        found += [(number, m.group(1)) for m in LINK.finditer(line)]
    return found


def test_slug_matches_github():
    assert slug("`faults.jsonl`") == "faultsjsonl"
    assert slug("Large N: the host's ARP table") == "large-n-the-hosts-arp-table"
    assert slug("What changed because of N = 1000") == "what-changed-because-of-n--1000"
    assert slug("Verdict fields of `summary.json`") == "verdict-fields-of-summaryjson"
    assert slug("Plain `docker compose up`") == "plain-docker-compose-up"


def test_no_file_cites_the_missing_design_file():
    offenders = []
    for path in tracked_files():
        data = path.read_bytes()
        if GONE.encode() in data:
            lines = [i for i, line in enumerate(data.splitlines(), 1) if GONE.encode() in line]
            offenders.append(f"{path.relative_to(ROOT)}:{','.join(map(str, lines))}")
    assert not offenders, f"{GONE} is not in the repository; cite docs/design.md instead: {offenders}"


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path):
    broken = []
    for number, target in links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"line {number}: {target} (no {file_part})")
            continue
        if anchor and dest.suffix == ".md" and anchor.lower() not in anchors(dest):
            broken.append(f"line {number}: {target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    assert not broken, f"{doc.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def test_docs_link_somewhere():
    assert links(ROOT / "README.md"), "README.md has no links at all: the link check would prove nothing"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, at most {README_MAX_LINES}"
