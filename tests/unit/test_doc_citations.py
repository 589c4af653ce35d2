"""Citations of docs/PROTOCOL.md name sections that exist, and every cited document ships with the project.

A citation is ``§N``, ``§N.M`` or ``§N.M.K`` (a numbered rule of section
N.M) after a mention of PROTOCOL on the same line; inside PROTOCOL.md every
``§`` is the document's own. A ``§`` after another document's name on the
line (``GUARANTEES §5``) is that document's; its section is not checked
here, but the document must be one in the repository (README.md or a file
in docs/).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = REPO / "docs" / "PROTOCOL.md"
SCANNED = ("README.md", "docs", "enqueue", "tools", "scripts", "tests", "sites", "config")
SUFFIXES = {".py", ".md", ".js", ".ini", ".sh", ".service", ""}
# A document is named in capitals (``GUARANTEES``, ``docs/PROTOCOL.md``) before the sections cited from it.
_DOC_OR_SECTION = re.compile(r"\b([A-Z][A-Z_]{3,})\b(?:\.md)?|§\s*(\d+(?:\.\d+)*)")
SHIPPED = {"README"} | {p.stem for p in (REPO / "docs").glob("*.md")}


def sections(text: str) -> set[str]:
    """The numbers a citation may name: ``## N.`` and ``### N.M`` headings, and the numbered items under them."""
    found: set[str] = set()
    current: str | None = None
    for line in text.splitlines():
        heading = re.match(r"^(#{2,3}) (\d+(?:\.\d+)?)\.? ", line)
        if heading:
            current = heading.group(2)
            found.add(current)
        elif current is not None:
            item = re.match(r"^(\d+)\. ", line)
            if item:
                found.add(f"{current}.{item.group(1)}")
    return found


def citations(path: Path, text: str) -> list[tuple[int, str, str]]:
    """(line number, document, section) for every ``§`` reference in ``text``."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        document = "PROTOCOL" if path == PROTOCOL else None
        for match in _DOC_OR_SECTION.finditer(line):
            if match.group(1):
                # In PROTOCOL.md a capital word (SIGTERM) is no document unless named as a file.
                if path != PROTOCOL or match.group(0).endswith(".md"):
                    document = match.group(1)
            else:
                out.append((number, document or "?", match.group(2)))
    return out


def scanned_files() -> list[Path]:
    files = []
    for name in SCANNED:
        root = REPO / name
        candidates = [root] if root.is_file() else sorted(root.rglob("*"))
        files += [p for p in candidates if p.is_file() and p.suffix in SUFFIXES and "node_modules" not in p.parts]
    return [p for p in files if p != Path(__file__).resolve()]  # this file's examples are not citations


def test_the_protocol_document_numbers_its_sections() -> None:
    known = sections(PROTOCOL.read_text())
    assert {"2.1", "3.1", "3.9", "5.1", "5.4", "6.1"} <= known
    assert {"3.4.4", "4.3"} <= known and "3.4.9" not in known


def test_every_citation_of_the_protocol_names_a_section_it_has() -> None:
    known = sections(PROTOCOL.read_text())
    wrong = []
    for path in scanned_files():
        for line, document, section in citations(path, path.read_text(errors="replace")):
            if document == "PROTOCOL" and section not in known:
                wrong.append(f"{path.relative_to(REPO)}:{line}: §{section}")
    assert wrong == []


def test_every_cited_document_ships_with_the_project() -> None:
    cited = [f"{path.relative_to(REPO)}:{line}: {document} §{section}" for path in scanned_files()
             for line, document, section in citations(path, path.read_text(errors="replace"))
             if document not in SHIPPED | {"?"}]
    assert cited == []


def test_citations_are_read_as_the_document_named_before_them(tmp_path) -> None:
    text = "see docs/PROTOCOL.md §3.4; why: §5.1, and GUARANTEES §7\nNOTES §3.5\n§2"
    assert citations(tmp_path / "x.py", text) == [
        (1, "PROTOCOL", "3.4"), (1, "PROTOCOL", "5.1"), (1, "GUARANTEES", "7"), (2, "NOTES", "3.5"), (3, "?", "2")]
    assert "NOTES" not in SHIPPED and {"PROTOCOL", "GUARANTEES", "SECURITY", "README"} <= SHIPPED
