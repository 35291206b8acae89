"""The pruner of several objectives: non-dominated sorting at successive-halving rungs."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.strategy import make_pruner
from hpsearch.strategy.pareto_pruner import RUNGS_ATTR, ParetoRungPruner, keeps


def test_rungs_are_min_resource_times_powers_of_the_factor():
    pruner = ParetoRungPruner(min_resource=2, reduction_factor=3)
    assert [e for e in range(1, 60) if pruner.is_rung(e)] == [2, 6, 18, 54]


def test_a_dominated_vector_stops_and_the_front_continues():
    front = [[0.1, 5.0], [0.2, 3.0], [0.3, 1.0]]
    dominated = [[0.4, 6.0], [0.5, 4.0], [0.6, 7.0]]
    for point in front:
        others = [p for p in front + dominated if p != point]
        assert keeps(point, others, reduction_factor=2)
    for point in dominated:
        others = [p for p in front + dominated if p != point]
        assert not keeps(point, others, reduction_factor=2)


def test_nothing_stops_before_enough_trials_reached_the_rung():
    assert keeps([9.0, 9.0], [[0.0, 0.0]], reduction_factor=3)
    assert not keeps([9.0, 9.0], [[0.0, 0.0], [1.0, 1.0]], reduction_factor=3)


def test_a_diverged_metric_counts_as_the_worst():
    assert not keeps([float("nan"), 1.0], [[0.5, 1.0], [0.6, 1.0]], reduction_factor=3)


def test_the_pruner_reads_the_vectors_of_other_trials_at_the_same_rung():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for accuracy, latency in [(0.9, 1.0), (0.8, 0.5), (0.7, 2.0), (0.6, 3.0)]:
        trial = study.ask()
        trial.set_user_attr(RUNGS_ATTR, {"1": [accuracy, latency]})
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    pruner = make_pruner("pareto", epochs=9)
    assert isinstance(pruner, ParetoRungPruner) and pruner.reduction_factor == 3
    assert pruner.stops(study, 99, 1, [0.5, 4.0])  # dominated by all four
    assert not pruner.stops(study, 99, 1, [0.95, 0.4])  # dominates all four
    assert not pruner.stops(study, 99, 3, [0.5, 4.0])  # nobody else reached epoch 3


@pytest.mark.parametrize("bad", [{"reduction_factor": 1}, {"min_resource": 0}])
def test_bad_arguments_are_refused_when_the_spec_is_checked(bad):
    with pytest.raises(ValueError, match="pruner 'pareto'"):
        make_pruner("pareto", epochs=5, **bad)


def test_a_copy_of_a_kept_point_does_not_keep_the_newcomer():
    # Exact ties (a config run twice): the newcomer goes last among equals.
    assert not keeps([0.5, 100.0], [[0.5, 100.0]] * 5, reduction_factor=3)
    assert keeps([0.4, 100.0], [[0.5, 100.0]] * 5, reduction_factor=3)


def test_a_copy_of_an_edge_point_is_no_edge_of_its_own():
    others = [[0.1, 9.0], [0.1, 9.0], [0.5, 5.0], [0.9, 1.0], [0.6, 6.0], [0.7, 7.0]]
    assert not keeps([0.1, 9.0], others, reduction_factor=3)  # its twin keeps the edge
