"""The bundled spaces against the checklist they come from: every row searched or explained,
tiers agreed.

The checklist is the copy shipped in the repository and the package,
``search_spaces/checklist.md`` (:mod:`hpsearch.spaces.checklist` parses it), so a bare clone
tests itself. ``HPSEARCH_CHECKLIST`` points the tests at another file instead, to check the
spaces against an edited checklist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hpsearch.spaces import ChecklistRow, SearchSpace, list_spaces, load_checklist, load_space
from hpsearch.spaces.checklist import CHECKLIST_FILE, checklist_text, parse_checklist

Row = ChecklistRow
REPO = Path(__file__).resolve().parents[2]


def uncovered(rows: dict[str, Row], named: set[str]) -> list[str]:
    """The rows ``named`` does not name, in the checklist's order.

    A group row ("Regularization", "Input data") is a row of its own, with its own Impact, as a
    reader sees it: naming one of its sub-rows does not account for it.
    """
    return [name for name in rows if name not in named]


def _named(space: SearchSpace) -> set[str]:
    return space.checklist_rows() | {r for e in space.not_searched for r in e.checklist_rows()}


@pytest.fixture(scope="module")
def rows() -> dict[str, Row]:
    override = os.environ.get("HPSEARCH_CHECKLIST")
    if override and not Path(override).is_file():
        pytest.fail(f"HPSEARCH_CHECKLIST={override!r} is not a file; unset it for the shipped copy")
    return load_checklist(override or None)


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
        "Regularization": Row("Regularization", "medium", None),
        "Dropout": Row("Dropout", "medium", "Regularization"),
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
    # A sub-row does not stand for its group: Regularization has its own Impact (Medium).
    assert uncovered(rows, {"Dropout", "Optimizer"}) == ["Regularization"]
    assert uncovered(rows, {"Regularization", "Optimizer"}) == ["Dropout"]
    assert uncovered(rows, {"Regularization", "Dropout", "Optimizer"}) == []


def test_the_checklist_is_shipped_in_the_repository() -> None:
    shipped = REPO / "search_spaces" / CHECKLIST_FILE
    assert shipped.is_file(), f"{shipped} is missing: the spaces' checklist must be in the repo"
    assert checklist_text() == shipped.read_text(encoding="utf-8")
    assert "Regularization" in load_checklist()


def test_a_checklist_without_its_sections_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"no section\(s\) \['Training', 'Data augmetation'\]"):
        parse_checklist("# Model\n| Layer size | High |\n")


def test_the_installed_package_carries_the_checklist(tmp_path: Path) -> None:
    # A wheel (what a non-editable `pip install .` installs) holds the checklist, and the
    # installed package reads it from there, away from the repository.
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for part in ("hpsearch", "service", "search_spaces"):
        shutil.copytree(REPO / part, src / part, ignore=skip)
    for part in ("pyproject.toml", "README.md"):
        (src / part).write_bytes((REPO / part).read_bytes())
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels = tmp_path / "wheels"
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)]
    subprocess.run(build, check=True, capture_output=True, timeout=120)
    (wheel,) = wheels.glob("hpsearch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert f"hpsearch/search_spaces/{CHECKLIST_FILE}" in names
    # One import package: service/ and search_spaces/ install inside hpsearch, never beside it.
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"hpsearch"}, top
    target = tmp_path / "installed"
    install = [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=120)
    probe = (
        "import hpsearch, pathlib; from hpsearch.spaces import load_checklist; "
        "print(pathlib.Path(hpsearch.__file__).parent.parent); print(len(load_checklist()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    assert out == [str(target), str(len(load_checklist()))]


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
