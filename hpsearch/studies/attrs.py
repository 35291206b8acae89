"""The attribute keys hpsearch writes on Optuna studies and trials, in one place.

Everything hpsearch knows about a study beyond Optuna's own columns lives in these attributes of
the study database, so that any process holding only the database URL can read it, and
optuna-dashboard shows the user attributes as they are. Study keys are ``hpsearch:``-prefixed;
trial keys are plain words, since the dashboard shows them beside the trial's params.

Keys owned by other rooms, for a reader looking for every key: the worker's ``hpsearch:claim``
(:mod:`hpsearch.worker.claim`), ``hpsearch:workers`` and ``oom_retries``
(:mod:`hpsearch.worker.loop`); the database's ``failed_trial`` and ``hpsearch:trials_edited``
(:mod:`hpsearch.db.storage`); the analysis's ``hpsearch:prior_check``
(:mod:`hpsearch.analysis.misfit`) and ``hpsearch:predictions_removed``
(:mod:`hpsearch.analysis.artifacts`).
"""

from __future__ import annotations

__all__ = [
    "CONFIG_ATTR",
    "FAILED_ATTR",
    "FAIL_REASON_ATTR",
    "FAIL_TRACEBACK_ATTR",
    "HISTORY_ATTR",
    "PRUNE_REASON_ATTR",
    "PRUNE_REQUEST_ATTR",
    "SEED_ATTR",
    "SPEC_ATTR",
    "STOPPED_ATTR",
    "WARM_START_ATTR",
    "WORKER_ATTR",
]

# Study user attributes (optuna-dashboard lists them).

#: The study user attribute that holds the resolved spec.
SPEC_ATTR = "hpsearch:spec"
#: The study user attribute holding the failure that stopped the study (a StudyFailure), or null.
FAILED_ATTR = "hpsearch:failed"
#: The study user attribute holding the changes made to the study (a list of StudyChange).
HISTORY_ATTR = "hpsearch:history"

# Study system attributes.

#: The study system attribute set (to an ISO timestamp) while the study is stopped.
STOPPED_ATTR = "hpsearch:stopped"
#: The study system attribute holding what the spec's warm start enqueued (a WarmStartReport).
WARM_START_ATTR = "hpsearch:warm_start"

# Trial user attributes hpsearch writes.

#: The trial's resolved config ``{name: value}``: every active parameter, fixed ones included.
CONFIG_ATTR = "config"
#: Why the trial failed, in one line.
FAIL_REASON_ATTR = "fail_reason"
#: A user objective's traceback when it raised (at most MAX_TRACEBACK_CHARS, its end kept).
FAIL_TRACEBACK_ATTR = "fail_traceback"
#: Why the trial was pruned (the pruner, or a user's request).
PRUNE_REASON_ATTR = "prune_reason"
#: The seed the trial trained with (the spec's seed + its number; a retry keeps the original's).
SEED_ATTR = "seed"
#: Set to true when a user asks to prune the running trial; its worker checks after each report.
PRUNE_REQUEST_ATTR = "prune_requested"
#: The worker that ran the trial.
WORKER_ATTR = "worker"
