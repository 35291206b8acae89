"""Study specs and the operations on studies that the service, the workers and the CLI share.

A study is an Optuna study in the study database plus its resolved :class:`StudySpec`, stored
as a study user attribute, so that any process holding only the database URL can rebuild the
objective, the sampler and the pruner. Nothing about a study lives anywhere else.

The package, by job (import the names from here; the modules are its insides):

- :mod:`~hpsearch.studies.attrs`: the attribute keys hpsearch writes on studies and trials;
- :mod:`~hpsearch.studies.spec`: the spec models (:class:`StudySpec`, :class:`Budget`,
  :class:`PrunerSpec`) and :func:`resolve_spec`, which validates a spec and fills its defaults;
- :mod:`~hpsearch.studies.lifecycle`: create, open, stop, resume, change (:func:`patch_study`,
  :func:`set_pruner`), enqueue into and delete a study;
- :mod:`~hpsearch.studies.status`: where studies stand (:class:`StudyStatus`,
  :func:`done_reason`), one at a time or listed in bulk;
- :mod:`~hpsearch.studies.trials`: a study's trials as users see them (:class:`TrialRecord`),
  its best one, and prune requests;
- beside them: :mod:`~hpsearch.studies.history` (why a study failed, the changes made to it),
  :mod:`~hpsearch.studies.checks` (a spec's task against the bundled datasets),
  :mod:`~hpsearch.studies.limits` (the caps on a spec) and :mod:`~hpsearch.studies.warm_start`
  (starting a study from another's best configs).
"""

from __future__ import annotations

from hpsearch.errors import StudyBusy
from hpsearch.studies.attrs import (
    CONFIG_ATTR,
    FAIL_REASON_ATTR,
    FAIL_TRACEBACK_ATTR,
    FAILED_ATTR,
    HISTORY_ATTR,
    PRUNE_REASON_ATTR,
    PRUNE_REQUEST_ATTR,
    SEED_ATTR,
    SPEC_ATTR,
    STOPPED_ATTR,
    WARM_START_ATTR,
    WORKER_ATTR,
)
from hpsearch.studies.history import StudyChange, StudyFailure, fail_study, study_failure
from hpsearch.studies.lifecycle import (
    PATCHABLE,
    create_study,
    delete_study,
    enqueue_configs,
    is_stopped,
    load_spec,
    open_study,
    patch_study,
    resume_study,
    set_pruner,
    stop_study,
)
from hpsearch.studies.spec import Budget, PrunerSpec, StudySpec, resolve_spec
from hpsearch.studies.status import (
    PruningSummary,
    StudyState,
    StudyStatus,
    done_reason,
    failed_reason,
    list_studies,
    page_studies,
    study_states,
    study_status,
    trials_spent,
)
from hpsearch.studies.pareto import ParetoFront, pareto_front, pick
from hpsearch.studies.trials import (
    TrialRecord,
    best_trial,
    best_trial_id,
    get_trial,
    list_trials,
    prune_requested,
    request_prune,
    trial_record,
    trial_states,
)

__all__ = [
    "ParetoFront",
    "pareto_front",
    "pick",
    "CONFIG_ATTR",
    "FAILED_ATTR",
    "FAIL_REASON_ATTR",
    "FAIL_TRACEBACK_ATTR",
    "HISTORY_ATTR",
    "PATCHABLE",
    "PRUNE_REASON_ATTR",
    "PRUNE_REQUEST_ATTR",
    "SEED_ATTR",
    "SPEC_ATTR",
    "STOPPED_ATTR",
    "WARM_START_ATTR",
    "WORKER_ATTR",
    "Budget",
    "PrunerSpec",
    "PruningSummary",
    "StudyBusy",
    "StudyChange",
    "StudyFailure",
    "StudySpec",
    "StudyState",
    "StudyStatus",
    "TrialRecord",
    "best_trial",
    "best_trial_id",
    "create_study",
    "delete_study",
    "done_reason",
    "enqueue_configs",
    "fail_study",
    "failed_reason",
    "get_trial",
    "is_stopped",
    "list_studies",
    "list_trials",
    "load_spec",
    "open_study",
    "page_studies",
    "patch_study",
    "prune_requested",
    "request_prune",
    "resolve_spec",
    "resume_study",
    "set_pruner",
    "stop_study",
    "study_failure",
    "study_states",
    "study_status",
    "trial_record",
    "trial_states",
    "trials_spent",
]
