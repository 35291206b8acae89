"""The training checklist the bundled spaces come from: the shipped copy and its rows.

The checklist is ``search_spaces/checklist.md``, shipped in the repository and in the package
(package data beside the spaces), so a bare clone or an installed wheel reads the same rows.
Its rows are the Model and Training tables (``- `` marks a sub-row of the row above), the
bullets beside those tables (links by their text, e.g. "Squeeze and Excitation", and "Batch is
too big" remedies such as "Gradient accumulation"), and the items of "Data augmetation".
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["CHECKLIST_FILE", "ChecklistRow", "checklist_text", "load_checklist", "parse_checklist"]

#: The checklist's file name inside the ``search_spaces`` package.
CHECKLIST_FILE = "checklist.md"

_BUNDLE = "hpsearch.search_spaces"
_LINK = re.compile(r"^\[([^\]]+)\]\([^)]*\)$")
_BULLET = re.compile(r"^(\s*)[-*] (.+?)\s*$")
_HEADING = re.compile(r"^#\s+(.+?)\s*$")
_TABLE_SECTIONS = ("Model", "Training")
_AUGMENTATION = "Data augmetation"  # sic: the section's heading as written


@dataclass(frozen=True)
class ChecklistRow:
    """One thing to check: its text as written, its Impact (lower-cased, ``None`` where the
    checklist gives none) and the row it is a sub-row of."""

    name: str
    impact: str | None
    parent: str | None


def checklist_text(path: str | os.PathLike[str] | None = None) -> str:
    """The checklist's text: the shipped copy, or the file at ``path``."""
    if path is not None:
        return Path(path).read_text(encoding="utf-8")
    return resources.files(_BUNDLE).joinpath(CHECKLIST_FILE).read_text(encoding="utf-8")


def load_checklist(path: str | os.PathLike[str] | None = None) -> dict[str, ChecklistRow]:
    """Every row of the shipped checklist (or of the file at ``path``) by name
    (:func:`parse_checklist`)."""
    return parse_checklist(checklist_text(path))


def parse_checklist(text: str) -> dict[str, ChecklistRow]:
    """Every row and item of a checklist's text by name; a table row wins over a bullet of the
    same name. Raises ``ValueError`` naming the sections found when one it reads is missing."""
    sections = _sections(text)
    missing = [s for s in (*_TABLE_SECTIONS, _AUGMENTATION) if s not in sections]
    if missing:
        raise ValueError(
            f"the checklist has no section(s) {missing}; found {list(sections)}. "
            "Keep its '# Model', '# Training' and '# Data augmetation' headings"
        )
    rows: dict[str, ChecklistRow] = {}
    for section in _TABLE_SECTIONS:
        for row in _table_rows(sections[section]):
            rows.setdefault(row.name, row)
        for row in _bullet_rows(sections[section], top_level_items=True):
            rows.setdefault(row.name, row)
    for row in _bullet_rows(sections[_AUGMENTATION], top_level_items=False):
        rows.setdefault(row.name, row)
    return rows


def _sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            lines = sections.setdefault(heading.group(1), [])
        elif lines is not None:
            lines.append(line)
    return sections


def _item_names(text: str) -> list[str]:
    """The items a bullet names: a link's text, or comma-separated words without trailing dots."""
    link = _LINK.match(text)
    if link:
        return [link.group(1).strip()]
    text = text.split("->")[0]  # "BackPropagation Through Time (BPTT) -> For RNNs"
    return [part.strip().rstrip(".").strip() for part in text.split(",") if part.strip(" .")]


def _table_rows(lines: list[str]) -> list[ChecklistRow]:
    rows: list[ChecklistRow] = []
    parent: str | None = None
    for line in lines:
        if not line.lstrip().startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0]
        if not name or set(name) <= set("-: "):
            continue  # header or separator
        impact = (cells[1].lower() or None) if len(cells) > 1 else None
        if name.startswith("- "):
            rows.append(ChecklistRow(name[2:].strip(), impact, parent))
        else:
            rows.append(ChecklistRow(name, impact, None))
            parent = name
    return rows


def _bullet_rows(lines: list[str], *, top_level_items: bool) -> list[ChecklistRow]:
    rows: list[ChecklistRow] = []
    stack: list[tuple[int, str | None]] = []  # (indent, item name or None for a category)
    for line in lines:
        bullet = _BULLET.match(line)
        if not bullet or line.lstrip().startswith("|"):
            continue
        indent, text = len(bullet.group(1)), bullet.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else None
        if indent == 0 and not top_level_items:
            stack.append((indent, None))  # "- Image", "- Audio": categories, not items
            continue
        names = _item_names(text)
        rows.extend(ChecklistRow(n, None, parent) for n in names)
        stack.append((indent, names[0] if len(names) == 1 else None))
    return rows
