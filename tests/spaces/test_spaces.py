"""Search spaces: loading and validating files, conditions, fixed values, defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import ValidationError

from hpsearch.errors import SpaceError
from hpsearch.spaces import (
    NotSearched,
    Param,
    SearchSpace,
    default_config,
    list_spaces,
    load_space,
    suggest_config,
)
from hpsearch.families import TASK_FAMILIES

BUNDLED = ["audio", "demo", "image", "tabular"]

# The names the trainer codes against; demo must have exactly these.
DEMO_PARAMS = {
    "optim.lr", "sched.name", "model.width", "model.depth", "loss.name", "loss.label_smoothing",
    "model.dropout", "model.activation", "optim.name", "optim.momentum", "optim.beta1",
    "optim.beta2", "optim.weight_decay", "train.batch_size",
}  # fmt: skip


def _space_dict() -> dict[str, Any]:
    """A small valid space, as a YAML file would hold it."""
    return {
        "name": "tiny",
        "task": "tabular_classification",
        "params": {
            "optim.lr": {
                "type": "float", "low": 1.0e-4, "high": 0.3, "log": True, "default": 3.0e-3,
                "impact": "high", "checklist": "Learining Rate (LR)",
            },
            "optim.name": {
                "type": "categorical", "choices": ["sgd", "adam"], "default": "adam",
                "impact": "low", "checklist": "Optimizer",
            },
            "optim.momentum": {
                "type": "float", "low": 0.8, "high": 0.99, "default": 0.9, "impact": "low",
                "checklist": "Momentum", "when": {"optim.name": ["sgd"]},
            },
            "model.depth": {
                "type": "int", "low": 1, "high": 4, "default": 2, "impact": "medium",
                "checklist": "Num of layers (depth)",
            },
        },
        "not_searched": [{"checklist": "Temporal AR (TAR)", "reason": "only for RNNs"}],
    }  # fmt: skip


def _write(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "bad.yaml"
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _run_trials(
    space: SearchSpace, n: int = 300, fixed: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = []
    for _ in range(n):
        trial = study.ask()
        config = suggest_config(trial, space, fixed)
        # Every active, unfixed parameter was suggested, and nothing else.
        assert set(trial.params) == set(config) - set(fixed or {})
        study.tell(trial, 0.0)
        configs.append(config)
    return configs


# --- bundled spaces ---------------------------------------------------------------------------


def test_list_spaces_names_the_bundled_files() -> None:
    names = list_spaces()
    assert names == sorted(names)
    assert set(BUNDLED) <= set(names)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_space_loads_and_is_consistent(name: str) -> None:
    space = load_space(name)
    assert space.name == name
    assert space.task in TASK_FAMILIES
    defaults = default_config(space)
    assert space.check_fixed(defaults) == defaults
    # The stored spec keeps the space as JSON; it must come back the same.
    assert SearchSpace.model_validate(space.model_dump(mode="json")) == space


def test_demo_has_the_parameter_names_the_trainer_uses() -> None:
    assert set(load_space("demo").params) == DEMO_PARAMS
    assert DEMO_PARAMS <= set(load_space("tabular").params)


def test_a_name_means_the_same_thing_in_every_space() -> None:
    seen: dict[str, tuple[str, str, list[str], str]] = {}
    conflicts = []
    for name in BUNDLED:
        for pname, p in load_space(name).params.items():
            key = (p.type, p.impact, p.checklist_rows())
            if pname in seen and seen[pname][:3] != key:
                first = seen[pname]
                conflicts.append(f"{pname}: {first[3]} has {first[:3]}, {name} has {key}")
            seen.setdefault(pname, (*key, name))
    assert not conflicts, "\n".join(conflicts)


def test_image_models_exist_in_timm() -> None:
    timm = pytest.importorskip("timm")
    choices = load_space("image").params["model.name"].choices
    assert choices
    missing = [m for m in choices if m not in timm.list_models()]
    assert not missing, f"not in timm.list_models(): {missing}"


def test_load_space_by_path_equals_by_name(tmp_path: Path) -> None:
    demo = load_space("demo")
    path = _write(tmp_path, demo.model_dump(mode="json"))
    assert load_space(path) == demo
    assert load_space(str(path)) == demo


def test_unknown_space_name_lists_the_known_ones() -> None:
    with pytest.raises(SpaceError) as e:
        load_space("dmeo")
    message = str(e.value)
    assert "'dmeo'" in message and "did you mean 'demo'" in message
    for name in BUNDLED:
        assert name in message


def test_missing_file_is_a_space_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpaceError, match="no such file"):
        load_space(missing)


def test_no_torch_import() -> None:
    code = (
        "import sys, hpsearch.spaces; "
        "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- bad files: the message names the file, the parameter and the field -------------------------


def _set(path: tuple[str, ...], value: Any) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        target = d
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return mutate


_DELETE = object()
_LR = ("params", "optim.lr")

BAD_SPACES = [
    pytest.param(_set((*_LR, "low"), 0.5), ["parameter 'optim.lr'", "field 'low'", "< `high`"], id="low>=high"),
    pytest.param(_set((*_LR, "low"), 0.0), ["parameter 'optim.lr'", "field 'low'", "log=true"], id="log-low<=0"),
    pytest.param(_set((*_LR, "default"), 0.5), ["parameter 'optim.lr'", "field 'default'", "0.5", "[0.0001, 0.3]"], id="default-out-of-bounds"),
    pytest.param(_set((*_LR, "lwo"), 0.1), ["parameter 'optim.lr'", "field 'lwo'", "did you mean 'low'"], id="unknown-field"),
    pytest.param(_set((*_LR, "impact"), _DELETE), ["parameter 'optim.lr'", "field 'impact'", "missing"], id="missing-impact"),
    pytest.param(_set((*_LR, "impact"), "huge"), ["parameter 'optim.lr'", "field 'impact'", "'high', 'medium' or 'low'"], id="bad-impact"),
    pytest.param(_set((*_LR, "choices"), [1, 2]), ["parameter 'optim.lr'", "field 'choices'"], id="float-with-choices"),
    pytest.param(_set(("params", "optim.name", "default"), "sdg"), ["parameter 'optim.name'", "field 'default'", "'sdg'", "['sgd', 'adam']"], id="default-not-a-choice"),
    pytest.param(_set(("params", "optim.name", "choices"), ["sgd", "sgd"]), ["parameter 'optim.name'", "field 'choices'", "unique"], id="duplicate-choices"),
    pytest.param(_set(("params", "model.depth", "step"), 2), ["parameter 'model.depth'", "field 'step'", "multiple"], id="step-not-dividing"),
    pytest.param(_set(("params", "model.depth", "high"), 4.5), ["parameter 'model.depth'", "field 'high'", "whole number"], id="int-with-fraction"),
    pytest.param(_set(("params", "optim.momentum", "when"), {"optim.nme": ["sgd"]}), ["parameter 'optim.momentum'", "field 'when'", "'optim.nme'", "did you mean 'optim.name'"], id="when-unknown-param"),
    pytest.param(_set(("params", "optim.momentum", "when"), {"optim.name": ["rmsprop"]}), ["parameter 'optim.momentum'", "field 'when'", "'rmsprop'"], id="when-impossible-value"),
    pytest.param(_set(("params", "optim.name", "when"), {"optim.momentum": [0.9]}), ["field 'when'", "cycle", "optim.momentum -> optim.name"], id="when-cycle"),
    pytest.param(_set(("not_searched", 0, "reason"), ""), ["not_searched entry 1", "field 'reason'"], id="empty-reason"),
    pytest.param(_set(("task",), _DELETE), ["field 'task'", "missing"], id="missing-task"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "fragments"), BAD_SPACES)
def test_bad_file_message_names_file_parameter_and_field(
    tmp_path: Path, mutate: Any, fragments: list[str]
) -> None:
    data = _space_dict()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(SpaceError) as e:
        load_space(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_the_valid_base_file_loads(tmp_path: Path) -> None:
    # The bad-file cases above fail because of their one change, not because of the base.
    space = load_space(_write(tmp_path, _space_dict()))
    assert list(space.params) == ["optim.lr", "optim.name", "optim.momentum", "model.depth"]


def test_bad_yaml_syntax_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\ntask: t\nparams:\n  optim.lr: {type: float, low: [1\n")
    with pytest.raises(SpaceError) as e:
        load_space(path)
    assert str(e.value).startswith(f"{path}:")
    assert "invalid YAML" in str(e.value)


def test_duplicate_parameter_is_rejected(tmp_path: Path) -> None:
    text = """\
name: tiny
task: tabular_classification
params:
  model.depth: {type: int, low: 1, high: 4, default: 2, impact: medium, checklist: x}
  model.depth: {type: int, low: 1, high: 8, default: 2, impact: medium, checklist: x}
"""
    path = _write(tmp_path, text)
    with pytest.raises(SpaceError) as e:
        load_space(path)
    assert str(e.value).startswith(f"{path}:") and "'model.depth' twice" in str(e.value)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="must be a mapping"):
        load_space(_write(tmp_path, "- a\n- b\n"))


def test_exponent_without_dot_is_a_float(tmp_path: Path) -> None:
    text = yaml.safe_dump(_space_dict(), sort_keys=False).replace("0.0001", "1e-4")
    assert "low: 1e-4" in text
    space = load_space(_write(tmp_path, text))
    assert space.params["optim.lr"].low == pytest.approx(1e-4)


# --- Param ------------------------------------------------------------------------------------


def test_int_param_normalizes_whole_floats() -> None:
    p = Param(type="int", low=1.0, high=4.0, default=2.0, impact="medium", checklist="x")
    assert (p.low, p.high, p.default) == (1, 4, 2)
    assert all(type(v) is int for v in (p.low, p.high, p.default))
    assert p.check_value(3.0) == 3 and type(p.check_value(3.0)) is int
    with pytest.raises(SpaceError, match=r"2\.5.*whole number.*\[1, 4\]"):
        p.check_value(2.5)
    with pytest.raises(SpaceError, match=r"7.*outside.*\[1, 4\]"):
        p.check_value(7)


def test_categorical_keeps_booleans_and_numbers_apart() -> None:
    flag = Param(
        type="categorical", choices=[False, True], default=False, impact="low", checklist="x"
    )
    assert flag.check_value(True) is True
    with pytest.raises(SpaceError, match=r"1 is not one of the choices \[False, True\]"):
        flag.check_value(1)
    bs = Param(type="categorical", choices=[16, 32, 64], default=64.0, impact="low", checklist="x")
    assert bs.default == 64 and type(bs.default) is int
    with pytest.raises(SpaceError, match="'64'"):
        bs.check_value("64")


def test_distribution_matches_the_param() -> None:
    space = load_space("demo")
    lr = space.params["optim.lr"].distribution()
    assert lr == FloatDistribution(1e-4, 0.3, log=True)
    assert space.params["model.depth"].distribution() == IntDistribution(1, 4)
    assert space.params["train.batch_size"].distribution() == CategoricalDistribution(
        [16, 32, 64, 128, 256]
    )
    step = Param(type="int", low=96, high=256, step=32, default=224, impact="high", checklist="x")
    assert step.distribution() == IntDistribution(96, 256, step=32)
    with pytest.raises(SpaceError, match="grid"):
        step.check_value(100)


def test_float_param_coerces_default_and_bounds() -> None:
    p = Param(type="float", low=0, high="1e-1", default="1e-2", impact="low", checklist="x")
    assert (p.low, p.high, p.default) == (0.0, 0.1, 0.01)
    assert all(type(v) is float for v in (p.low, p.high, p.default))


def test_not_searched_needs_a_reason() -> None:
    with pytest.raises(ValidationError):
        NotSearched(checklist="Temporal AR (TAR)", reason="  ")


# --- conditions ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUNDLED)
def test_conditional_params_follow_their_conditions(name: str) -> None:
    space = load_space(name)
    configs = _run_trials(space)
    rules = {
        "optim.momentum": lambda c: c["optim.name"] == "sgd",
        "optim.beta1": lambda c: c["optim.name"] in ("adam", "adamw"),
        "optim.beta2": lambda c: c["optim.name"] in ("adam", "adamw"),
        "optim.eps": lambda c: c["optim.name"] in ("adam", "adamw"),
        "loss.label_smoothing": lambda c: c["loss.name"] == "ce",
        "model.stochastic_depth": lambda c: c["model.residual"] is True,
        "train.ema_decay": lambda c: c["train.ema"] is True,
        "transfer.freeze_epochs": lambda c: c["transfer.pretrained"] is True,
        "aug.mixup_alpha": lambda c: c["aug.mixup"] is True,
        "aug.cutmix_alpha": lambda c: c["aug.cutmix"] is True,
        "pretrain.noise": lambda c: c["pretrain.dae_epochs"] > 0,
        "pretrain.tie_weights": lambda c: c["pretrain.dae_epochs"] > 0,
    }
    conditional = {n for n, p in space.params.items() if p.when}
    assert conditional <= set(rules), f"add a rule for {conditional - set(rules)}"
    for param in conditional:
        present = [param in c for c in configs]
        expected = [rules[param](c) for c in configs]
        assert present == expected, param
        assert any(present) and not all(present), f"{param}: condition never varied"
    for config in configs:
        for pname, value in config.items():
            assert space.params[pname].check_value(value) == value


def test_momentum_only_with_sgd_and_betas_only_with_adam() -> None:
    configs = _run_trials(load_space("demo"), n=200)
    for c in configs:
        assert ("optim.momentum" in c) == (c["optim.name"] == "sgd")
        assert ("optim.beta1" in c) == ("optim.beta2" in c) == (c["optim.name"] != "sgd")
        assert ("loss.label_smoothing" in c) == (c["loss.name"] == "ce")
    assert {c["optim.name"] for c in configs} == {"sgd", "adam", "adamw"}


def test_ordered_names_puts_conditions_first() -> None:
    d = _space_dict()
    d["params"] = {"optim.momentum": d["params"].pop("optim.momentum"), **d["params"]}
    space = SearchSpace.model_validate(d)
    assert space.ordered_names() == ["optim.lr", "optim.name", "optim.momentum", "model.depth"]
    configs = _run_trials(space, n=50)
    assert any("optim.momentum" in c for c in configs)


def test_a_param_under_an_inactive_param_is_inactive() -> None:
    d = _space_dict()
    d["params"]["optim.nesterov"] = {
        "type": "categorical", "choices": [False, True], "default": True, "impact": "low",
        "checklist": "Momentum", "when": {"optim.momentum": [0.9]},
    }  # fmt: skip
    space = SearchSpace.model_validate(d)
    # optim.momentum is inactive with adam, even though a stale value is in the config.
    assert not space.is_active("optim.nesterov", {"optim.name": "adam", "optim.momentum": 0.9})
    assert space.is_active("optim.nesterov", {"optim.name": "sgd", "optim.momentum": 0.9})
    assert not space.is_active("optim.nesterov", {"optim.name": "sgd", "optim.momentum": 0.95})
    with pytest.raises(SpaceError, match="did you mean 'optim.name'"):
        space.is_active("optim.nam", {})


# --- fixed values and defaults ------------------------------------------------------------------


def test_fixed_values_pin_params_without_suggesting_them() -> None:
    space = load_space("demo")
    fixed = {"optim.name": "sgd", "train.batch_size": 128.0}
    for config in _run_trials(space, n=30, fixed=fixed):
        assert config["optim.name"] == "sgd"
        assert config["train.batch_size"] == 128 and type(config["train.batch_size"]) is int
        assert "optim.momentum" in config and "optim.beta1" not in config


def test_check_fixed_rejects_unknown_names_with_a_suggestion() -> None:
    with pytest.raises(SpaceError) as e:
        load_space("demo").check_fixed({"optim.l": 0.01})
    assert "'optim.l'" in str(e.value) and "did you mean 'optim.lr'" in str(e.value)


def test_check_fixed_rejects_out_of_range_values() -> None:
    with pytest.raises(SpaceError) as e:
        load_space("demo").check_fixed({"optim.lr": 5.0})
    message = str(e.value)
    assert "'optim.lr'" in message and "5.0" in message and "[0.0001, 0.3]" in message
    with pytest.raises(SpaceError, match=r"'rmsprop' is not one of the choices"):
        load_space("demo").check_fixed({"optim.name": "rmsprop"})


def test_check_fixed_normalizes_and_rejects_contradictions() -> None:
    space = load_space("demo")
    fixed = space.check_fixed({"model.width": 64.0, "model.dropout": 0})
    assert fixed == {"model.width": 64, "model.dropout": 0.0}
    assert type(fixed["model.width"]) is int and type(fixed["model.dropout"]) is float
    with pytest.raises(SpaceError, match="'optim.momentum' would never be used"):
        space.check_fixed({"optim.name": "adam", "optim.momentum": 0.9})


def test_default_config_equals_the_defaults() -> None:
    space = load_space("demo")
    config = default_config(space)
    assert config == {
        "optim.lr": 3e-3, "sched.name": "cosine", "model.width": 128, "model.depth": 2,
        "loss.name": "ce", "loss.label_smoothing": 0.0, "model.dropout": 0.1,
        "model.activation": "relu", "optim.name": "adamw", "optim.beta1": 0.9,
        "optim.beta2": 0.999, "optim.weight_decay": 1e-5, "train.batch_size": 64,
    }  # fmt: skip
    for name in BUNDLED:
        space = load_space(name)
        config = default_config(space)
        for pname, param in space.params.items():
            if pname in config:
                assert config[pname] == param.default
            else:
                assert not space.is_active(pname, config)


def test_default_config_takes_fixed_values() -> None:
    config = default_config(load_space("demo"), {"optim.name": "sgd"})
    assert config["optim.name"] == "sgd" and config["optim.momentum"] == 0.9
    assert "optim.beta1" not in config


def test_fixed_trial_replays_a_config() -> None:
    space = load_space("tabular")
    config = default_config(space, {"model.residual": True, "optim.name": "sgd"})
    assert suggest_config(optuna.trial.FixedTrial(config), space) == config


# --- building a space in Python -----------------------------------------------------------------


def test_model_validate_builds_a_space_from_a_dict() -> None:
    space = SearchSpace.model_validate(_space_dict())
    assert space.params["optim.lr"].distribution() == FloatDistribution(1e-4, 0.3, log=True)
    assert space.checklist_rows() == {
        "Learining Rate (LR)", "Optimizer", "Momentum", "Num of layers (depth)",
    }  # fmt: skip
    assert default_config(space) == {"optim.lr": 3e-3, "optim.name": "adam", "model.depth": 2}
    configs = _run_trials(space, n=40)
    assert {("optim.momentum" in c) for c in configs} == {True, False}


def test_model_validate_rejects_a_bad_dict() -> None:
    d = _space_dict()
    d["params"]["optim.lr"]["high"] = 1e-5
    with pytest.raises(ValidationError, match="`low` must be < `high`"):
        SearchSpace.model_validate(d)


def test_a_row_cannot_be_both_searched_and_not_searched() -> None:
    d = _space_dict()
    d["not_searched"].append({"checklist": "Momentum", "reason": "x"})
    with pytest.raises(ValidationError, match="'Momentum' is listed as not searched"):
        SearchSpace.model_validate(d)
