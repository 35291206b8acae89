"""Take the model home (issue 18, item 6): the worker keeps the best trials' weights, and
``hpsearch export`` (and REST) hands them over with what it takes to load and retrain them.

One real study: a worker trains 3 trials of the tabular space on digits (SQLite, a local
artifact folder, best:2 kept), and one more trial is pruned. The exported ``load.py`` runs in a
fresh Python process and prints the validation metric, which must be the recorded one.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import optuna
import pytest
import safetensors.torch
from optuna.trial import TrialState

from conftest import serve_app
from hpsearch import cli, studies
from hpsearch.analysis.artifacts import WEIGHTS_FILE, open_artifact_store, weights_for
from hpsearch.analysis.export_model import EXPORT_FILES
from hpsearch.client import Client
from hpsearch.db.storage import open_storage
from hpsearch.service import Settings, create_app
from hpsearch.train.core.family_knobs import FAMILY_KNOBS

NAME = "digits-home"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The study, trained once for the module: 3 complete trials (best:2 keep their files)
    and a pruned one."""
    from hpsearch.worker import run_worker

    folder = tmp_path_factory.mktemp("export")
    url = f"sqlite:///{folder}/s.db"
    store = folder / "hpsearch-artifacts"  # the default place beside the SQLite file
    storage = open_storage(url)
    spec = {
        "name": NAME,
        "space": "tabular",
        "task": {"dataset": "digits", "epochs": 1},
        "metric": "val_loss",  # a continuous value: "within 1e-6" means something
        "budget": {"trials": 3},
        "pruner": "none",
        "seed": 0,
        "fixed": {"model.width": 32},
    }
    studies.create_study(storage, spec)
    ran = run_worker(url, study=NAME, device="cpu", artifacts=str(store), keep_artifacts="best:2")
    assert ran == 3
    trials = optuna.load_study(study_name=NAME, storage=url).trials
    ranked = sorted(trials, key=lambda t: (t.value, t.number))  # val_loss: lower is better
    loaded = optuna.load_study(study_name=NAME, storage=url)
    pruned = loaded.ask()
    loaded.tell(pruned, state=TrialState.PRUNED)
    return SimpleNamespace(
        url=url,
        store=store,
        best=ranked[0],
        outside=ranked[-1],
        pruned=pruned.number,
    )


def _export(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = cli.main(["export", NAME, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def _try_command(readme: str) -> list[str]:
    block = re.search(r"```\n(hpsearch try .*?)\n```", readme, re.S)
    assert block, readme
    return shlex.split(block.group(1).replace("\\\n", " "))


def test_exported_model_loads_in_a_fresh_process_and_gives_the_recorded_metric(
    study: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The store keeps predictions and weights of the best two trials only.
    assert len(list(study.store.iterdir())) == 4

    out = tmp_path / "home"
    code, printed, err = _export([str(out), "--storage", study.url], capsys)
    assert code == 0, err
    assert f"trial {study.best.number} of {NAME} exported to {out}" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)

    # config.json: every knob the trainer read, the trial's own values among them.
    config = json.loads((out / "config.json").read_text())
    assert set(config) == set(FAMILY_KNOBS["tabular_classification"])
    assert config.items() >= study.best.user_attrs["config"].items()
    spec = json.loads((out / "spec.json").read_text())
    assert spec == studies.load_spec(open_storage(study.url), NAME).model_dump(mode="json")
    weights = safetensors.torch.load_file(out / WEIGHTS_FILE)
    assert weights["head.weight"].shape == (10, 32)  # digits' 10 classes, the fixed width

    # load.py, in a fresh interpreter started elsewhere: the recorded value to within 1e-6.
    done = subprocess.run(
        [sys.executable, str(out / "load.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    metric, value = done.stdout.split()[:2]
    assert metric == "val_loss"
    assert abs(float(value) - study.best.value) <= 1e-6, (value, study.best.value)

    # The README's `hpsearch try` command trains the same run again: the same final value.
    readme = (out / "README.md").read_text()
    argv = _try_command(readme)
    assert argv[:3] == ["hpsearch", "try", "tabular"]
    assert ["--seed", str(study.best.user_attrs["seed"])] == argv[-2:]
    assert cli.main(argv[1:]) == 0
    summary = capsys.readouterr().out.split("summary:")[1]
    assert f"{study.best.value:.4f}" in summary


def test_a_trial_without_weights_is_one_line_saying_why(
    study: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x")
    cases: dict[tuple[str, ...], str] = {
        ("--trial", str(study.outside.number)): "fell out of the best 2 complete trials",
        ("--trial", str(study.pruned)): "it was pruned, and only complete trials keep weights",
        ("--trial", "99"): f"study {NAME!r} has no trial number 99",
        ("--artifacts", "off"): "there is no artifact store to keep them in",
    }
    for args, reason in cases.items():
        code, _out, err = _export([out, "--storage", study.url, *args], capsys)
        assert code == 1, args
        assert err[0].startswith("reading sqlite:")
        assert len(err) == 2 and err[1].startswith("hpsearch export: error: "), err
        assert reason in err[1], (args, err)
    assert not Path(out).exists()  # nothing written for a refused export
    taken = tmp_path / "a-file"
    taken.write_text("mine")
    code, _out, err = _export([str(taken), "--storage", study.url], capsys)
    assert code == 1 and "cannot write the export into" in err[-1], err
    assert taken.read_text() == "mine"


def test_rest_serves_the_same_weights_and_export(
    study: SimpleNamespace, tmp_path: Path, free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(storage=study.url, artifacts=str(study.store), anonymous_reads=True)
    storage = open_storage(study.url)
    _number, kept = weights_for(storage, open_artifact_store(str(study.store)), NAME)
    local = tmp_path / "local"
    assert _export([str(local), "--storage", study.url], capsys)[0] == 0
    with serve_app(create_app(settings), free_port) as base:
        with Client(base) as client:
            assert client.model(NAME, study.best.number) == kept
        answer = httpx.get(f"{base}/studies/{NAME}/trials/{study.best.number}/model")
        assert answer.headers["content-type"] == "application/octet-stream"
        assert 'filename="digits-home-trial' in answer.headers["content-disposition"]
        # `hpsearch export --server`: the same files, byte for byte.
        remote = tmp_path / "remote"
        code, _out, err = _export([str(remote), "--server", base], capsys)
        assert code == 0, err
        for name in EXPORT_FILES:
            assert (remote / name).read_bytes() == (local / name).read_bytes(), name
        # No weights: 404 with the reason, never a traceback or a 500.
        for number, reason in ((study.pruned, "was pruned"), (study.outside.number, "fell out")):
            for what in ("model", "export"):
                got = httpx.get(f"{base}/studies/{NAME}/trials/{number}/{what}")
                assert got.status_code == 404, got.text
                assert reason in got.json()["detail"] and "Traceback" not in got.text
        missing = httpx.get(f"{base}/studies/ghost/trials/0/model")
        assert missing.status_code == 404 and "no study named 'ghost'" in missing.text


def test_serving_weights_does_not_import_torch(study: SimpleNamespace) -> None:
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from hpsearch.service import Settings, create_app\n"
        f"s = Settings(storage={study.url!r}, artifacts={str(study.store)!r}, "
        "anonymous_reads=True)\n"
        "with TestClient(create_app(s)) as c:\n"
        f"    assert c.get('/studies/{NAME}/trials/{study.best.number}/export').status_code == 200\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_store_that_cannot_keep_the_weights_costs_the_export_not_the_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import hpsearch.worker.loop as worker_loop
    from hpsearch.worker import run_worker

    def refuse(*_args: object, **_kwargs: object) -> str:
        raise OSError("No space left on device")

    # The store refuses only the weights (a disk that fills up after the predictions).
    monkeypatch.setattr(worker_loop, "upload_weights", refuse)
    url = f"sqlite:///{tmp_path}/s.db"
    spec = {
        "name": NAME,
        "space": "tabular",
        "task": {"dataset": "digits", "epochs": 1},
        "budget": {"trials": 1},
        "fixed": {"model.width": 16},
    }
    studies.create_study(open_storage(url), spec)
    store = tmp_path / "store"
    assert run_worker(url, study=NAME, device="cpu", artifacts=str(store)) == 1
    (trial,) = optuna.load_study(study_name=NAME, storage=url).trials
    assert trial.state == TrialState.COMPLETE
    assert len(list(store.iterdir())) == 1  # its predictions: the report still works
    code, _out, err = _export(
        [str(tmp_path / "out"), "--storage", url, "--artifacts", str(store)], capsys
    )
    assert code == 1 and "it kept no weights" in err[-1], err
