"""Every document a comment cites is in the repository, and every section it cites exists there.

Code comments cite the project's own notes as ``docs/<name>.md §N`` (docs/architecture.md, docs/discord.md,
docs/mirai-api-http.md); a citation of a file or a section that does not exist would send a maintainer nowhere.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITATION = re.compile(r"(?<![\w/.-])((?:docs/)?[\w.-]+\.md)(?!\w)(?: §(\d+(?:\.\d+)*))?")
#: a section is a numbered heading (``### 2.7 ...``) or a numbered list item (``* **8.6.6** ...``)
SECTION = re.compile(r"^(?:#{1,4} |\* \*\*)(\d+(?:\.\d+)*)[.\s*]", re.M)


def citations() -> list[tuple[str, str, str | None]]:
    found: list[tuple[str, str, str | None]] = []
    for folder in ("relay", "adapters", "scripts", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == Path(__file__).resolve():
                continue  # this file names the documents in prose
            for match in CITATION.finditer(path.read_text(encoding="utf-8")):
                found.append((str(path.relative_to(ROOT)), match.group(1), match.group(2)))
    return found


def test_cited_documents_are_in_the_repository() -> None:
    missing = sorted({f"{where}: {doc}" for where, doc, _ in citations() if not (ROOT / doc).is_file()})
    assert missing == []


def test_cited_sections_exist() -> None:
    sections: dict[str, set[str]] = {}
    for doc in ("docs/architecture.md", "docs/discord.md", "docs/mirai-api-http.md"):
        sections[doc] = set(SECTION.findall((ROOT / doc).read_text(encoding="utf-8")))
    missing = sorted(
        {
            f"{where}: {doc} §{section}"
            for where, doc, section in citations()
            if section and doc in sections and section not in sections[doc]
        }
    )
    assert missing == []


def test_comments_cite_the_docs_by_their_path() -> None:
    bare = sorted(
        {
            f"{where}: {doc}"
            for where, doc, _ in citations()
            if doc.endswith(("discord.md", "mirai-api-http.md", "architecture.md")) and not doc.startswith("docs/")
        }
    )
    assert bare == []
