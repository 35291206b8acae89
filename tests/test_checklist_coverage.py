"""The bundled spaces against the user's checklist: every row searched or explained, tiers agreed.

The checklist is ``shared/checklist.md`` beside the repository (``HPSEARCH_CHECKLIST`` overrides
the path). Its rows are the Model and Training tables (``- `` marks a sub-row of the row above),
the bullets beside those tables (links by their text, e.g. "Squeeze and Excitation", and "Batch
is too big" remedies such as "Gradient accumulation"), and the items of "Data augmetation".
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpsearch.spaces import SearchSpace, list_spaces, load_space

_LINK = re.compile(r"^\[([^\]]+)\]\([^)]*\)$")
_BULLET = re.compile(r"^(\s*)[-*] (.+?)\s*$")
_HEADING = re.compile(r"^#\s+(.+?)\s*$")
_TABLE_SECTIONS = ("Model", "Training")
_AUGMENTATION = "Data augmetation"


@dataclass(frozen=True)
class Row:
    """One thing to check: its text as written, its Impact (lower-cased) and its parent row."""

    name: str
    impact: str | None
    parent: str | None


def find_checklist() -> Path:
    env = os.environ.get("HPSEARCH_CHECKLIST")
    if env:
        if not Path(env).is_file():
            pytest.fail(f"HPSEARCH_CHECKLIST={env!r} is not a file")
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    candidates = [repo.parent / "shared" / "checklist.md", repo / "shared" / "checklist.md"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    pytest.fail(
        "checklist.md not found; looked at "
        + ", ".join(str(c) for c in candidates)
        + ". Put shared/checklist.md beside the repository or set HPSEARCH_CHECKLIST."
    )


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


def _table_rows(lines: list[str]) -> list[Row]:
    rows: list[Row] = []
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
            rows.append(Row(name[2:].strip(), impact, parent))
        else:
            rows.append(Row(name, impact, None))
            parent = name
    return rows


def _bullet_rows(lines: list[str], *, top_level_items: bool) -> list[Row]:
    rows: list[Row] = []
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
        rows.extend(Row(n, None, parent) for n in names)
        stack.append((indent, names[0] if len(names) == 1 else None))
    return rows


def parse_checklist(text: str) -> dict[str, Row]:
    """Every row and item of the checklist by name; a table row wins over a bullet of that name."""
    sections = _sections(text)
    missing = [s for s in (*_TABLE_SECTIONS, _AUGMENTATION) if s not in sections]
    if missing:
        pytest.fail(f"checklist has no section(s) {missing}; found {list(sections)}")
    rows: dict[str, Row] = {}
    for section in _TABLE_SECTIONS:
        for row in _table_rows(sections[section]):
            rows.setdefault(row.name, row)
        for row in _bullet_rows(sections[section], top_level_items=True):
            rows.setdefault(row.name, row)
    for row in _bullet_rows(sections[_AUGMENTATION], top_level_items=False):
        rows.setdefault(row.name, row)
    return rows


def uncovered(rows: dict[str, Row], named: set[str]) -> list[str]:
    """Rows neither named nor covered through a sub-row (a parent counts when a sub-row does)."""

    def covered(name: str) -> bool:
        return name in named or any(covered(r.name) for r in rows.values() if r.parent == name)

    return [name for name in rows if not covered(name)]


def _named(space: SearchSpace) -> set[str]:
    return space.checklist_rows() | {r for e in space.not_searched for r in e.checklist_rows()}


@pytest.fixture(scope="module")
def rows() -> dict[str, Row]:
    return parse_checklist(find_checklist().read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def spaces() -> list[SearchSpace]:
    names = list_spaces()
    assert names, "no bundled search spaces"
    return [load_space(name) for name in names]


def test_checklist_is_parsed(rows: dict[str, Row]) -> None:
    # Guards the parser: if it found nothing, every coverage test below would pass vacuously.
    expected = {
        "Layer size": Row("Layer size", "high", None),
        "Stochastic Depth": Row("Stochastic Depth", "low", "Residual connections"),
        "Normalization": Row("Normalization", None, "Input data"),
        "Squeeze and Excitation": Row("Squeeze and Excitation", None, None),
        "Learining Rate (LR)": Row("Learining Rate (LR)", "high", "Optimizer"),
        "Batch Size (BS)": Row("Batch Size (BS)", "low", None),
        "EMA of weights": Row("EMA of weights", None, None),
        "Gradient accumulation": Row("Gradient accumulation", None, None),
        "BackPropagation Through Time (BPTT)": Row(
            "BackPropagation Through Time (BPTT)", None, None
        ),
        "AugMix": Row("AugMix", None, None),
        "RandAugment": Row("RandAugment", None, None),
        "time warping": Row("time warping", None, "SpecAugment"),
    }
    wrong = {n: rows.get(n) for n, r in expected.items() if rows.get(n) != r}
    assert not wrong, f"parsed differently than expected: {wrong}"
    for not_items in ("Image", "Audio", "Impact", "Siamese Nets"):
        assert not_items not in rows
    assert len(rows) >= 50, sorted(rows)


def test_uncovered_finds_missing_rows() -> None:
    rows = {
        "Regularization": Row("Regularization", "medium", None),
        "Dropout": Row("Dropout", "medium", "Regularization"),
        "Optimizer": Row("Optimizer", "low", None),
    }
    assert uncovered(rows, set()) == ["Regularization", "Dropout", "Optimizer"]
    assert uncovered(rows, {"Dropout"}) == ["Optimizer"]
    assert uncovered(rows, {"Regularization", "Optimizer"}) == ["Dropout"]


def test_every_row_is_searched_or_explained_somewhere(
    rows: dict[str, Row], spaces: list[SearchSpace]
) -> None:
    named = set().union(*(_named(s) for s in spaces))
    missing = uncovered(rows, named)
    assert not missing, (
        "checklist rows that no bundled space searches or lists under not_searched:\n  "
        + "\n  ".join(missing)
    )


def test_every_space_accounts_for_every_row(
    rows: dict[str, Row], spaces: list[SearchSpace]
) -> None:
    problems = [
        f"{space.name}: {row}" for space in spaces for row in uncovered(rows, _named(space))
    ]
    assert not problems, (
        "rows a space neither searches nor lists under not_searched (with a reason):\n  "
        + "\n  ".join(problems)
    )


def test_every_checklist_name_is_a_real_row(
    rows: dict[str, Row], spaces: list[SearchSpace]
) -> None:
    unknown: list[str] = []
    for space in spaces:
        named = [(f"parameter {n!r}", p.checklist_rows()) for n, p in space.params.items()]
        named += [
            (f"not_searched entry {i + 1}", e.checklist_rows())
            for i, e in enumerate(space.not_searched)
        ]
        for where, names in named:
            unknown += [f"{space.name}: {where} names {r!r}" for r in names if r not in rows]
    assert not unknown, "not rows of checklist.md (write them as written there):\n  " + "\n  ".join(
        unknown
    )


def test_impact_matches_the_checklist(rows: dict[str, Row], spaces: list[SearchSpace]) -> None:
    wrong = [
        f"{space.name}: parameter {name!r} has impact {param.impact!r}, "
        f"but row {row!r} says {rows[row].impact!r}"
        for space in spaces
        for name, param in space.params.items()
        for row in param.checklist_rows()
        if row in rows and rows[row].impact is not None and rows[row].impact != param.impact
    ]
    assert not wrong, "\n".join(wrong)
