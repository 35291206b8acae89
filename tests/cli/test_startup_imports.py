"""The verbs that do not train start without the training stack (issue 17).

``hpsearch --help``, ``hpsearch status`` and the REST app (``hpsearch serve``) must not import
torch, timm, torchvision or scikit-learn: each of those costs seconds and hundreds of MB, and the
API container has no GPU stack. Nothing may import a top-level ``service`` or ``search_spaces``
module either: those folders install as ``hpsearch.service`` and ``hpsearch.search_spaces``.

Each check runs in a fresh interpreter (what an earlier test imported would hide an import),
from an empty folder (so the repository's own ``service/`` folder is not importable by accident).
Timings are in ``benchmarks/startup.py``, not here.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "timm", "torchvision", "sklearn")
TOP_LEVEL_FORBIDDEN = ("service", "search_spaces")

# Runs `hpsearch ARGV...` (or a Python statement, with `-c`) in this interpreter, then prints
# which heavy or forbidden top-level modules got imported, as JSON on the last line of stdout.
_PROBE = """
import json, sys
if sys.argv[1] == "-c":
    exec(sys.argv[2])
    code = 0
else:
    from hpsearch.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as e:
        code = e.code
sys.stdout.flush()
loaded = sorted(m for m in %r if m in sys.modules)
print("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}))
""" % ((*HEAVY, *TOP_LEVEL_FORBIDDEN),)


def _probe(args: list[str], cwd: Path) -> tuple[int, list[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, f"the probe did not finish:\n{done.stdout}\n{done.stderr}"
    result = json.loads(lines[-1].removeprefix("PROBE "))
    return result["code"], result["loaded"], done.stdout + done.stderr


def test_help_imports_no_training_stack(tmp_path: Path) -> None:
    code, loaded, out = _probe(["--help"], tmp_path)
    assert code == 0, out
    assert "status" in out and "worker" in out  # it did print the verbs
    assert loaded == [], f"`hpsearch --help` imported {loaded}"


def test_status_on_an_empty_file_imports_no_training_stack(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    code, loaded, out = _probe(["status", "--storage", f"sqlite:///{empty}"], tmp_path)
    assert code == 1, out
    assert "not a study database yet" in out, out
    assert loaded == [], f"`hpsearch status` imported {loaded}"


def test_status_and_best_on_an_empty_database_import_no_training_stack(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.storages.RDBStorage(url)  # Optuna's tables, no study yet
    code, loaded, out = _probe(["status", "--storage", url], tmp_path)
    assert code == 0, out
    assert "no studies yet" in out, out
    assert loaded == [], f"`hpsearch status` imported {loaded}"
    code, loaded, out = _probe(["best", "nosuch", "--storage", url], tmp_path)
    assert code == 1 and "no study named 'nosuch'" in out, out
    assert loaded == [], f"`hpsearch best` imported {loaded}"


def test_importing_the_service_and_the_cli_imports_no_training_stack(tmp_path: Path) -> None:
    # `hpsearch serve`'s import path, the CLI and the client; building the app loads its
    # routers and the bundled spaces (hpsearch.search_spaces).
    statement = (
        "import hpsearch.cli, hpsearch.client\n"
        "from hpsearch.service.app import create_app\n"
        "from hpsearch.spaces import list_spaces\n"
        "create_app()\n"
        "assert list_spaces(), 'no bundled spaces found'\n"
    )
    code, loaded, out = _probe(["-c", statement], tmp_path)
    assert code == 0, out
    assert loaded == [], f"importing the service, the CLI and the client imported {loaded}"


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_source_imports_a_top_level_service_or_search_spaces() -> None:
    offenders = []
    for folder in ("hpsearch", "service", "search_spaces", "tests", "benchmarks", "examples"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if ".venv" in path.parts:
                continue
            bad = _top_level_imports(path) & set(TOP_LEVEL_FORBIDDEN)
            if bad:
                offenders.append(f"{path.relative_to(REPO)}: {sorted(bad)}")
    assert offenders == [], "import hpsearch.service / hpsearch.search_spaces instead:\n" + (
        "\n".join(offenders)
    )


def test_a_verb_leaves_no_sqlite_wal_files_behind(tmp_path: Path) -> None:
    # The CLI skips the collector at exit (hpsearch.cli._fast_exit) but closes its database
    # connections first: the WAL is checkpointed into the file, and -wal and -shm are removed,
    # so copying the .db file alone copies every study.
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.storages.RDBStorage(url)
    code, loaded, out = _probe(["status", "--storage", url], tmp_path)
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["studies.db"], out
