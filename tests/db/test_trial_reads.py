"""hpsearch's fast trial reader builds exactly the FrozenTrial Optuna's RDB storage builds."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hpsearch.db.storage import open_storage
from hpsearch.db.reads import load_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _fields(trial: optuna.trial.FrozenTrial) -> dict:
    fields = {k: v for k, v in trial.__dict__.items() if "intermediate_values" not in k}
    # NaN != NaN: compare intermediate values by their repr.
    fields["steps"] = {k: repr(v) for k, v in trial.intermediate_values.items()}
    return fields


def test_every_kind_of_value_reads_as_optuna_reads_it(storage_url: str) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(
        storage=storage, study_name="r", directions=["maximize", "minimize"]
    )
    dists = {
        "lr": FloatDistribution(1e-5, 1e-1, log=True),
        "units": IntDistribution(8, 512, step=8),
        "act": CategoricalDistribution(["relu", "gelu", None, 1.5]),
        "p": FloatDistribution(0, 1, step=0.1),
    }
    full = study.ask(dists)
    for step, value in enumerate([0.5, math.inf, -math.inf, math.nan]):
        storage.set_trial_intermediate_value(full._trial_id, step, value)
    full.set_user_attr("config", {"a": [1, 2], "b": None})
    study._storage.set_trial_system_attr(full._trial_id, "failed_trial", 3)
    study.tell(full, [math.inf, -1.25])
    bare = study.ask()  # running, nothing set
    pruned = study.ask({"lr": dists["lr"]})
    study.tell(pruned, state=TrialState.PRUNED)
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    study.enqueue_trial({"units": 64})
    ids = [t._trial_id for t in storage.get_all_trials(study._study_id)]
    ours = load_trials(storage, list(reversed(ids)) + [10**9])  # order kept, unknown id left out
    theirs = [storage.get_trial(i) for i in reversed(ids)]
    assert [_fields(t) for t in ours] == [_fields(t) for t in theirs]
    assert ours[-1].number == full.number and ours[-1].values == [math.inf, -1.25]
    assert bare.number in [t.number for t in ours]
