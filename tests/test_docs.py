"""The README and docs/: every relative link resolves, every page is reachable from the
README, and the README's layout table covers every file of the repository.

Anchors follow GitHub's rules (github-slugger): the heading's text as rendered, lower
case, without punctuation other than `-` and `_`, each space a `-`; a repeated heading
gets `-1`, `-2`, ... in order.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Folders whose every file the layout table names one by one: each module there is a
# piece a newcomer looks up. The other rows (terraform/, tests/, docs/, ...) describe
# their folder as a whole.
NAMED_ONE_BY_ONE = ("telemetry/", "scripts/")


def without_fences(markdown: str) -> str:
    """The lines outside fenced code blocks."""
    prose, fence = [], None
    for line in markdown.split("\n"):
        marker = re.match(r"\s*(```|~~~)", line)
        if fence is None and marker:
            fence = marker.group(1)
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            prose.append(line)
    return "\n".join(prose)


def without_code(markdown: str) -> str:
    """The text outside fenced blocks and inline code spans (neither holds links)."""
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", without_fences(markdown), flags=re.S)


def headings(markdown: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", without_fences(markdown), re.M)]


def slug(heading: str) -> str:
    """GitHub's anchor of one heading, before duplicates are numbered."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    kept = (
        ch for ch in text.lower() if ch.isalnum() or ch in " -_" or unicodedata.category(ch) in ("Mn", "Mc", "Me", "Pc")
    )
    return "".join(kept).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in headings(markdown):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    found.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", markdown))
    return found


def relative_links(markdown: str) -> list[str]:
    prose = without_code(markdown)
    inline = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)
    defined = re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", prose, re.M)
    return [t for t in inline + defined if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", t)]


def test_the_slug_rules_are_githubs():
    assert slug("Google Cloud's limits, locally") == "google-clouds-limits-locally"
    assert slug("Overlapping runs: the run lock") == "overlapping-runs-the-run-lock"
    assert slug("`make demo` and `run_lock.py`") == "make-demo-and-run_lockpy"
    assert slug("Ingest: wire format & answers") == "ingest-wire-format--answers"
    assert anchors("# A\n## A\n```\n# B\n```\n## A\n") == {"a", "a-1", "a-2"}
    assert relative_links("[x](a.md#b) `[y](c.md)` [z](https://e.org) [w]: d.md\n") == ["a.md#b"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    text = page.read_text()
    broken = []
    for target in relative_links(text):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked.read_text())):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links((ROOT / "README.md").read_text())}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_the_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"^## ([^\n]*)\n(.*?)(?=^## )", readme, re.M | re.S)
    assert first.group(1) == "The two commands"
    assert re.search(r"^make demo ", first.group(2), re.M) and re.search(r"^make test ", first.group(2), re.M)


def layout_rows() -> list[tuple[list[str], list[str]]]:
    """(paths, names) per row of the README's layout table: the paths of its first cell,
    the backquoted names of its description."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Layout\n(.*?)(?=^## )", readme, re.M | re.S).group(1)
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 2 and cells[0] not in ("path", "---"):
            rows.append((re.findall(r"`([^`]+)`", cells[0]), re.findall(r"`([^`]+)`", cells[1])))
    return rows


def repository_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    # README.md is the table's own page; an __init__.py only marks its package.
    return [f for f in listed if (ROOT / f).is_file() and f != "README.md" and Path(f).name != "__init__.py"]


def uncovered(files: list[str], rows: list[tuple[list[str], list[str]]]) -> list[str]:
    def pattern(path: str) -> re.Pattern[str]:
        return re.compile(re.escape(path).replace(re.escape("<name>"), "[^/]+") + ("" if path.endswith("/") else "$"))

    named_anywhere = {name for _, names in rows for name in names}
    missing = []
    for file in files:
        ancestors = {file} | {"/".join(file.split("/")[:i]) + "/" for i in range(1, file.count("/") + 1)}
        if ancestors & named_anywhere:
            continue
        matches = [
            (len(m.group(0)), m.group(0), names)
            for paths, names in rows
            for path in paths
            if (m := pattern(path).match(file))
        ]
        if not matches:
            missing.append(file)
            continue
        _, folder, names = max(matches)
        inside = file[len(folder) :]
        if folder.endswith("/") and folder.startswith(NAMED_ONE_BY_ONE):
            if inside not in names and inside.split("/")[0] + "/" not in names:
                missing.append(file)
    return missing


def test_the_layout_check_finds_a_file_nobody_names():
    rows = [(["telemetry/common/"], ["wire.py", "schemas/"]), (["terraform/", "Makefile"], [])]
    files = ["telemetry/common/wire.py", "telemetry/common/schemas/a.json", "terraform/x.tf", "Makefile"]
    assert uncovered(files, rows) == []
    assert uncovered(["telemetry/common/new.py", "docs/x.md"], rows) == ["telemetry/common/new.py", "docs/x.md"]


def test_the_layout_table_covers_every_file_of_the_repository():
    assert uncovered(repository_files(), layout_rows()) == []
