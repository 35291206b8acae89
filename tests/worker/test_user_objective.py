"""Your own training function: the README's flow as written, imports from the working
directory, plain errors for an inline space, a free metric name, and tracebacks kept."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hpsearch import studies
from hpsearch.errors import SpecError
from hpsearch.db.storage import open_storage
from hpsearch.service import Settings, create_app

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "own_objective"
HPSEARCH = [sys.executable, "-c", "import sys; from hpsearch.cli import main; sys.exit(main())"]


def _section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"### {title}\n")
    end = readme.find("\n### ", start + 1)
    return readme[start:end]


def _env(storage: str) -> dict[str, str]:
    # No PYTHONPATH: the module must be found in the working directory, as `python -m` does.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HPSEARCH_SERVER")}
    return {**env, "HPSEARCH_STORAGE": storage, "HPSEARCH_CPU_AMP": "0"}


def _hpsearch(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*HPSEARCH, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_readme_example_is_the_example_folder_and_runs_as_written(tmp_path: Path) -> None:
    section = _section("Your own training function")
    (python,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    (spec,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    (bash,) = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert python == (EXAMPLE / "quadratic.py").read_text()
    assert spec == (EXAMPLE / "study.yaml").read_text()

    work = tmp_path / "examples" / "own_objective"
    shutil.copytree(EXAMPLE, work)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HPSEARCH_SERVER")}
    env.pop("HPSEARCH_STORAGE", None)
    cwd = tmp_path
    outputs = []
    for line in bash.splitlines():
        command = line.split("#")[0].strip()
        if command.startswith("cd "):
            cwd = cwd / command.removeprefix("cd ").strip()
        elif command.startswith("export "):
            key, _, value = command.removeprefix("export ").partition("=")
            env[key] = value
        elif command.startswith("hpsearch "):
            done = _hpsearch(command.split()[1:], cwd=cwd, env=env)
            assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
    submitted, _worker, best, trials = outputs
    assert submitted.strip() == "quadratic"
    storage = open_storage(f"sqlite:///{work / 'quadratic.db'}")
    status = studies.study_status(storage, "quadratic")
    assert status.counts["complete"] + status.counts["pruned"] == 12
    assert status.counts["fail"] == 0
    value = float(re.search(r"value (\S+)", best).group(1))
    assert value < 2.0  # the defaults score 5.2: the search found better
    assert "reason" in trials.splitlines()[0]


FAILING = """
def objective(config, report):
    report(1.0, 1)
    return _lookup(config)


def _lookup(config):
    return {"x": 1.0}["z"] + config["x"]
"""


def test_a_failing_function_keeps_its_traceback_in_the_trial_the_cli_the_api_and_the_log(
    tmp_path: Path,
) -> None:
    (tmp_path / "broken_fn.py").write_text(FAILING)
    url = f"sqlite:///{tmp_path / 'broken.db'}"
    spec = {
        "name": "broken",
        "space": {"params": {"x": {"type": "float", "low": 0, "high": 1, "default": 0.5}}},
        "metric": "score",
        "direction": "maximize",
        "budget": {"trials": 1},
    }
    studies.create_study(open_storage(url), spec)
    env = _env(url)
    worker = _hpsearch(
        ["worker", "--study", "broken", "--objective", "broken_fn:objective", "--max-trials", "1"],
        cwd=tmp_path,
        env=env,
    )
    # The worker's log has the whole traceback, down to the line of the user's code.
    assert "Traceback (most recent call last)" in worker.stderr, worker.stderr
    assert "in _lookup" in worker.stderr and "KeyError: 'z'" in worker.stderr

    listing = _hpsearch(["trials", "broken"], cwd=tmp_path, env=env)
    assert listing.returncode == 0, listing.stderr
    header, row = listing.stdout.splitlines()[:2]
    assert "reason" in header and "fail" in row and "KeyError: 'z'" in row

    one = _hpsearch(["trials", "broken", "0"], cwd=tmp_path, env=env)
    assert one.returncode == 0, one.stderr
    assert "failed: KeyError: 'z'" in one.stdout
    assert "broken_fn.py" in one.stdout and "in _lookup" in one.stdout

    with TestClient(create_app(Settings(storage=url, anonymous_reads=True))) as api:
        trial = api.get("/studies/broken/trials/0")
    assert trial.status_code == 200, trial.text
    body = trial.json()
    assert body["fail_reason"] == "KeyError: 'z'"
    assert "in _lookup" in body["fail_traceback"] and len(body["fail_traceback"]) <= 8200


def test_the_traceback_kept_is_bounded_and_keeps_its_end() -> None:
    from hpsearch.worker.objective import bounded_traceback

    def ping(n: int) -> None:  # two functions in turn: Python folds no repeated frames
        if n == 0:
            raise ValueError("at the bottom")
        pong(n - 1)

    def pong(n: int) -> None:
        ping(n)

    try:
        ping(200)
    except ValueError as e:
        text = bounded_traceback(e, limit=2000)
    assert len(text) < 2200 and "characters cut" in text
    assert text.startswith("Traceback") and text.endswith("ValueError: at the bottom")


def test_an_inline_space_needs_no_task_name_checklist_or_impact() -> None:
    spec = studies.resolve_spec(
        {
            "space": {"params": {"x": {"type": "float", "low": -1, "high": 1, "default": 0}}},
            "metric": "val_f1",
            "direction": "maximize",
        }
    )
    assert spec.search_space.task == "custom" and spec.task.family == "custom"
    assert spec.search_space.params["x"].impact == "medium"
    assert spec.search_space.params["x"].checklist_rows() == []
    assert (spec.metric, spec.direction) == ("val_f1", "maximize")
    stored = spec.model_dump(mode="json", exclude={"created_at"})
    assert studies.resolve_spec(stored).metric == "val_f1"  # what is stored reads back


def test_a_free_metric_needs_its_direction_and_is_for_your_own_function_only() -> None:
    space = {"params": {"x": {"type": "float", "low": -1, "high": 1, "default": 0}}}
    with pytest.raises(SpecError, match="direction: maximize` or `direction: minimize"):
        studies.resolve_spec({"space": space, "metric": "f1"})
    with pytest.raises(SpecError, match="metric 'f1' is not reported for tabular"):
        studies.resolve_spec({"space": "demo", "metric": "f1"})
    with pytest.raises(SpecError, match="must start with a letter"):
        studies.resolve_spec({"space": space, "metric": "1; drop", "direction": "minimize"})


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        (
            {"params": {"x": {"type": "float", "default": 0}}},
            "space: parameter 'x', field 'low': a float parameter needs `low`",
        ),
        (
            {"params": {"x": {"type": "float", "low": 0, "high": 1, "default": 0, "hgih": 2}}},
            "space: parameter 'x', field 'hgih': unknown field",
        ),
        (5, "space: expected a string or a mapping, got 5"),
    ],
)
def test_inline_space_errors_are_plain_lines_in_python_over_rest_and_in_the_cli(
    space: object, expected: str, sqlite_url: str, make_api_token, tmp_path: Path
) -> None:
    spec = {"name": "bad", "space": space}
    with pytest.raises(SpecError) as caught:
        studies.resolve_spec(spec)
    message = str(caught.value)
    assert expected in message
    assert "function-after" not in message and "SearchSpace]" not in message

    headers = {"Authorization": f"Bearer {make_api_token(sqlite_url, 'write')}"}
    with TestClient(create_app(Settings(storage=sqlite_url)), headers=headers) as api:
        answer = api.post("/studies", json=spec)
    assert answer.status_code == 422
    assert "function-after" not in answer.text and "SearchSpace]" not in answer.text

    from hpsearch.client import _detail  # what `hpsearch submit` prints of that answer

    assert expected in _detail(answer)
