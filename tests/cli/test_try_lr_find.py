"""`hpsearch try` and `hpsearch lr-find`: trying configs outside a study, and the LR range test."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys

import pytest
import torch

from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.spaces import load_space
from hpsearch.families import TaskSpec
from hpsearch.train import train
from hpsearch.train.lr_finder import lr_range_test, suggest_lr_bounds
from hpsearch.cli.tryout import configs_to_try, parse_assignments, trainer_for, try_configs

torch.set_num_threads(1)

TABULAR = "tabular_classification"
# "number epoch train_loss val_accuracy val_loss lr"
EPOCH_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s+[\d.e+-]+\s+([\d.]+)\s+[\d.e+-]+\s+[\d.e+-]+$")


def hpsearch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the machine's cores are shared
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def epoch_lines(stdout: str) -> list[tuple[int, int, float]]:
    return [
        (int(m[1]), int(m[2]), float(m[3])) for m in map(EPOCH_LINE.match, stdout.splitlines()) if m
    ]


def summary_rows(stdout: str) -> list[list[str]]:
    lines = stdout.split("summary:", 1)[1].strip().splitlines()
    return [line.split() for line in lines[1:]]


# --- hpsearch try ------------------------------------------------------------------------


def test_try_one_config_prints_each_epoch_and_a_summary():
    out = hpsearch("try", "demo", "--set", "optim.lr=0.01", "--epochs", "2")
    assert out.returncode == 0, out.stderr
    assert "optim.lr=0.01 " in out.stdout  # the --set value is the one trained
    assert [(n, e) for n, e, _ in epoch_lines(out.stdout)] == [(1, 1), (1, 2)]
    rows = summary_rows(out.stdout)
    assert len(rows) == 1 and rows[0][0].startswith("1")
    final = float(rows[0][1])
    assert final == epoch_lines(out.stdout)[-1][2] and final > 0.5  # it learned something


def run_main(capsys, *args: str) -> subprocess.CompletedProcess[str]:
    # In-process: a subprocess pays seconds for importing torch and timm again.
    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def test_try_random_runs_different_configs(capsys):
    out = run_main(capsys, "try", "demo", "--random", "3", "--epochs", "1")
    assert out.returncode == 0, out.stderr
    configs = [line for line in out.stdout.splitlines() if re.match(r"config \d+: ", line)]
    assert len(configs) == 3 and len({c.split(":", 1)[1] for c in configs}) == 3
    assert [(n, e) for n, e, _ in epoch_lines(out.stdout)] == [(1, 1), (2, 1), (3, 1)]
    assert len(summary_rows(out.stdout)) == 3


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("optim.lrr=0.1", "optim.lrr"),
        ("optim.lr=5", "outside the range"),
        ("optim.lr", "key=value"),
    ],
)
def test_try_bad_set_is_one_line_naming_it(assignment, named):
    out = hpsearch("try", "demo", "--set", assignment, "--epochs", "1")
    assert out.returncode == 1
    assert named in out.stderr and "Traceback" not in out.stderr
    assert "optim.lr" in out.stderr
    assert not epoch_lines(out.stdout)  # nothing trained


def test_diverging_config_fails_alone():
    task = TaskSpec(family=TABULAR, epochs=1)
    good = {"optim.lr": 0.01}
    diverging = {"optim.name": "sgd", "optim.lr": 1e8}
    seen = []
    results = try_configs(
        [good, diverging, {**good, "model.width": 32}],
        task,
        on_epoch=lambda number, result: seen.append(number),
    )
    assert [r.failed for r in results] == [False, True, False]
    assert "TrainingDiverged" in results[1].error and "optim.lr" in results[1].error
    assert results[1].final is None
    assert results[0].final > 0.5 and results[2].final > 0.5
    assert seen == [1, 3]  # the failed config finished no epoch; the next one still ran


def test_try_exits_1_when_a_config_diverges(tmp_path, capsys):
    space = tmp_path / "wild.yaml"
    space.write_text(
        "name: wild\ntask: tabular_classification\nparams:\n"
        "  optim.lr: {type: float, low: 1.0e-3, high: 1.0e+9, log: true, default: 1.0e-2,"
        " impact: high, checklist: 'Learining Rate (LR)'}\n"
    )
    out = run_main(capsys, "try", str(space), "--set", "optim.lr=1e8", "--epochs", "1")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "TrainingDiverged" in out.stdout and "1 of 1 config(s) failed" in out.stderr


def test_a_knob_the_trainer_refuses_is_reported_as_failed():
    (result,) = try_configs([{"model.width": 0}], TaskSpec(family=TABULAR, epochs=1))
    assert result.failed and "model.width" in result.error


def test_family_without_trainer_is_a_usage_error():
    with pytest.raises(UsageError, match="no trainer for task family 'molecules'"):
        trainer_for("molecules")


def test_configs_to_try_pins_set_values_and_is_seeded():
    space = load_space("demo")
    fixed = parse_assignments(["optim.name=sgd", "train.batch_size=32"])
    configs = configs_to_try(space, fixed=fixed, n_random=4, seed=3)
    assert all(c["optim.name"] == "sgd" and c["train.batch_size"] == 32 for c in configs)
    assert all("optim.momentum" in c and "optim.beta1" not in c for c in configs)
    assert len({c["optim.lr"] for c in configs}) == 4
    assert configs == configs_to_try(space, fixed=fixed, n_random=4, seed=3)
    (default,) = configs_to_try(space, fixed={"optim.lr": "1e-3"})
    assert default["optim.lr"] == 0.001 and default["model.width"] == 128


# --- lr-find -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_test():
    return lr_range_test(load_space("demo"), TaskSpec(dataset="digits"), steps=100)


def test_lr_range_test_loss_falls_then_explodes(demo_test):
    t = demo_test
    assert all(b > a for a, b in zip(t.lrs, t.lrs[1:]))
    assert t.lrs[0] == pytest.approx(1e-7)
    lowest = t.min_loss_index
    assert t.smoothed[lowest] < 0.6 * t.smoothed[0]  # it fell...
    assert t.smoothed[-1] > 1.5 * t.smoothed[lowest]  # ...then rose
    # Stopped on the explosion, well before the last step's LR of 10.
    assert t.stopped_early and "exploded" in t.stop_reason
    assert len(t.lrs) < t.steps and t.lrs[-1] < 10
    assert all(math.isfinite(v) for v in t.losses)


def test_suggested_range_is_inside_and_ordered(demo_test):
    low, high = demo_test.suggested_range()
    assert 1e-7 <= low < high <= 10
    assert high == demo_test.min_loss_lr
    assert low <= demo_test.steepest_lr / 10 and high / low >= 100
    assert demo_test.steepest_lr < demo_test.min_loss_lr


def test_suggest_lr_bounds_gives_lrs_that_train():
    space, task = load_space("demo"), TaskSpec(dataset="digits", epochs=2)
    low, high = suggest_lr_bounds(space, task)
    assert 1e-5 < low < high < 1
    # The middle of the range trains well; a decade above it, the same config does worse.
    good = train({"optim.lr": math.sqrt(low * high)}, task, lambda v, e: None, seed=0)
    too_high = train({"optim.lr": high * 10}, task, lambda v, e: None, seed=0)
    assert good > 0.9 and good > too_high + 0.05


def test_lr_range_test_refuses_other_families_and_bad_bounds():
    with pytest.raises(UsageError, match="tabular_classification spaces only"):
        lr_range_test(load_space("audio"), TaskSpec(dataset="tones"))
    with pytest.raises(UsageError, match="min_lr < max_lr"):
        lr_range_test(load_space("demo"), TaskSpec(), min_lr=1.0, max_lr=0.1)


def test_lr_find_cli_prints_curve_range_and_plot(tmp_path, capsys):
    png = tmp_path / "lr.png"
    out = run_main(capsys, "lr-find", "demo", "--steps", "60", "--plot", str(png))
    assert "Traceback" not in out.stderr
    assert "<- minimum" in out.stdout and "<- steepest" in out.stdout
    match = re.search(r"suggested optim.lr range: (\S+) \.\. (\S+)", out.stdout)
    assert match and float(match[1]) < float(match[2])
    if importlib.util.find_spec("matplotlib") is None:
        assert out.returncode == 1 and "pip install matplotlib" in out.stderr
    else:
        assert out.returncode == 0, out.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_find_writes_a_space_a_study_can_use(tmp_path, capsys):
    from hpsearch.studies import resolve_spec

    out = tmp_path / "demo-lr.yaml"
    assert main(["lr-find", "demo", "--steps", "60", "--write-space", str(out)]) == 0
    printed = capsys.readouterr().out
    low, high = (float(x) for x in re.search(r"range: (\S+) \.\. (\S+)", printed).groups())
    narrowed = load_space(out).params["optim.lr"]
    assert (narrowed.low, narrowed.high) == pytest.approx((low, high), rel=1e-2)  # printed .2e
    assert narrowed.low <= narrowed.default <= narrowed.high
    original = load_space("demo")
    assert narrowed.low > original.params["optim.lr"].low or narrowed.high < 0.3
    spec = resolve_spec({"space": str(out), "budget": {"trials": 5}})
    assert spec.search_space.params["optim.lr"].high == narrowed.high
    assert set(spec.search_space.params) == set(original.params)
