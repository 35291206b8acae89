"""Study specs and the study operations, against every storage backend."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpsearch import studies
from hpsearch.errors import SpecError, StudyExists, StudyNotFound, TrialNotFound, TrialNotRunning
from hpsearch.db.storage import open_storage


def _spec(**overrides):
    spec = {
        "name": "s1",
        "space": "demo",
        "task": {"epochs": 3},
        "budget": {"trials": 5},
        "seed": 1,
    }
    spec.update(overrides)
    return spec


def test_resolved_spec_is_self_contained():
    spec = studies.resolve_spec(_spec(fixed={"optim.name": "sgd"}))
    assert spec.search_space.name == "demo"
    assert "optim.lr" in spec.search_space.params
    assert spec.task.family == "tabular_classification"
    assert spec.direction == "maximize"
    assert spec.fixed == {"optim.name": "sgd"}
    assert spec.created_at
    # It survives a trip through JSON, as it is stored.
    again = studies.StudySpec.model_validate(spec.model_dump(mode="json"))
    assert again == spec


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"fixed": {"optim.lrr": 0.1}}, "optim.lr"),  # unknown parameter, the close name suggested
        ({"fixed": {"model.depth": 99}}, "model.depth"),  # out of range
        ({"fixed": {"optim.name": "adagrad-x"}}, "optim.name"),
        ({"space": "no-such-space"}, "no-such-space"),
        ({"strategy": "bayes"}, "strategy"),
        ({"pruner": {"name": "sometimes"}}, "sometimes"),
        ({"pruner": {"name": "median", "n_warmup": 3}}, "n_warmup"),
        ({"metric": "val_loss", "direction": "maximize"}, "minimize"),
        ({"budget": {"trials": 0}}, "budget.trials"),
        ({"budget": {"trials": None}}, "seconds"),
        ({"name": "has spaces"}, "name"),
        ({"task": {"epochs": 3, "dataset": "digits", "colour": "red"}}, "colour"),
        ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
        ({"space": "image"}, "pretrained_weights"),  # transfer learning needs weights
        ({"space": "image", "fixed": {"transfer.pretrained": True}}, "pretrained_weights"),
    ],
)
def test_bad_specs_are_refused_with_a_message_naming_the_problem(overrides, message):
    with pytest.raises(SpecError, match=message):
        studies.resolve_spec(_spec(**overrides))


def test_every_bundled_space_makes_a_study():
    for name in ("demo", "tabular", "audio"):
        assert studies.resolve_spec(_spec(space=name)).task.family
    image = studies.resolve_spec(_spec(space="image", fixed={"transfer.pretrained": False}))
    assert image.task.family == "image_classification"
    with_weights = studies.resolve_spec(_spec(space="image", task={"pretrained_weights": "w.pth"}))
    assert with_weights.task.pretrained_weights == "w.pth"


def test_a_time_budget_alone_sets_no_trial_limit():
    spec = studies.resolve_spec(_spec(budget={"seconds": 60}))
    assert spec.budget.trials is None and spec.budget.seconds == 60
    assert studies.resolve_spec({"space": "demo"}).budget.trials == 50  # the default budget


def test_space_paths_are_refused_where_the_service_calls(tmp_path):
    space_file = tmp_path / "mine.yaml"
    space_file.write_text((Path(__file__).parents[2] / "search_spaces" / "demo.yaml").read_text())
    assert studies.resolve_spec(_spec(space=str(space_file))).search_space.name == "demo"
    with pytest.raises(SpecError, match="file path"):
        studies.resolve_spec(_spec(space=str(space_file)), allow_space_paths=False)


def test_create_study_stores_the_spec_with_the_study(storage_url):
    storage = open_storage(storage_url)
    created = studies.create_study(storage, _spec())
    assert studies.load_spec(open_storage(storage_url), "s1") == created
    assert optuna.load_study(study_name="s1", storage=storage_url).metric_names == ["val_accuracy"]
    status = studies.study_status(storage, "s1")
    assert status.finished == 0 and not status.done
    assert status.budget_trials == 5
    with pytest.raises(StudyExists, match="s1"):
        studies.create_study(storage, _spec())


def test_a_refused_spec_writes_nothing(storage_url):
    storage = open_storage(storage_url)
    with pytest.raises(SpecError):
        studies.create_study(storage, _spec(fixed={"nope": 1}))
    assert studies.list_studies(storage) == []


def test_unknown_study_and_trial(storage_url):
    storage = open_storage(storage_url)
    with pytest.raises(StudyNotFound, match="ghost"):
        studies.study_status(storage, "ghost")
    studies.create_study(storage, _spec())
    with pytest.raises(TrialNotFound, match="no complete trial"):
        studies.best_trial(storage, "s1")
    with pytest.raises(TrialNotFound, match="7"):
        studies.request_prune(storage, "s1", 7)


def test_status_trials_best_and_prune_requests(storage_url):
    storage = open_storage(storage_url)
    studies.create_study(storage, _spec())
    study, spec = studies.open_study(storage, "s1")
    values = [0.5, 0.9, 0.7]
    for v in values:
        trial = study.ask()
        trial.set_user_attr("config", {"optim.lr": v})
        trial.report(v, 1)
        study.tell(trial, v)
    running = study.ask()
    status = studies.study_status(storage, "s1")
    assert status.counts["complete"] == 3 and status.counts["running"] == 1
    assert status.best_value == 0.9 and status.best_trial == 1
    page, total = studies.list_trials(storage, "s1", offset=1, limit=2)
    assert total == 4 and [t.number for t in page] == [1, 2]
    assert page[0].config == {"optim.lr": 0.9} and page[0].intermediate_values == {1: 0.9}
    only_running, n = studies.list_trials(storage, "s1", state="running")
    assert n == 1 and only_running[0].number == running.number
    with pytest.raises(SpecError, match="state"):
        studies.list_trials(storage, "s1", state="sleeping")
    assert studies.best_trial(storage, "s1").number == 1
    with pytest.raises(TrialNotRunning, match="complete"):
        studies.request_prune(storage, "s1", 0)
    assert not studies.prune_requested(storage, running._trial_id)
    studies.request_prune(storage, "s1", running.number)
    assert studies.prune_requested(storage, running._trial_id)
