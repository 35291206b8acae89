"""The JSON the REST API answers with, as the types of :class:`hpsearch.client.Client`'s results.

Each type mirrors the response model of the same name in the API's OpenAPI document
(``/openapi.json``, built from :mod:`hpsearch.service.schemas` and the pydantic models it uses),
field for field: a client's results stay plain dicts, indexed as before, and a type checker knows
their keys. Every field is always present in a response (the service sends defaults too), so every
key is required here; ``X | None`` says the value may be ``null``. Times are ISO 8601 strings.

This module imports nothing of hpsearch's, so the client stays light; ``tests/service/test_client_types.py``
checks each type against the service's models.
"""

from __future__ import annotations

from typing import Any, Literal

# pydantic (which checks these types against the models, in the tests) needs typing_extensions'
# TypedDict before Python 3.12.
from typing_extensions import TypedDict

__all__ = [
    "Bound",
    "Budget",
    "ClassMetrics",
    "ConfusionMatrix",
    "EnqueuePublic",
    "ErrorReport",
    "Health",
    "ImportanceReport",
    "ImportanceRow",
    "NotSearched",
    "Objective",
    "Param",
    "ParetoFront",
    "ParetoSummary",
    "PriorCheck",
    "PriorMisfit",
    "PrunerSpec",
    "PruningSummary",
    "RankedKnob",
    "ResidualSummary",
    "SearchSpace",
    "SpacesPublic",
    "StudiesPublic",
    "StudyChange",
    "StudyFailure",
    "StudySpec",
    "StudyStatus",
    "TaskSpec",
    "TrialRecord",
    "TrialsPublic",
    "WarmStart",
    "WarmStartReport",
    "WorkerRecord",
    "WorkersPublic",
    "WorstExample",
]

#: A value a categorical parameter (or a default) may take.
Choice = str | int | float | bool
Impact = Literal["high", "medium", "low"]


class Health(TypedDict):
    """``GET /healthz``, ``GET /readyz``."""

    status: str


# --- search spaces -------------------------------------------------------------------------------


class Param(TypedDict):
    """One parameter of a search space."""

    type: Literal["float", "int", "categorical"]
    low: int | float | None
    high: int | float | None
    log: bool
    step: int | float | None
    choices: list[Choice] | None
    default: Choice
    impact: Impact
    checklist: str | list[str] | None
    when: dict[str, list[Choice]] | None
    description: str


class NotSearched(TypedDict):
    """A checklist row that no parameter of the space realizes, and why."""

    checklist: str | list[str]
    reason: str


class SearchSpace(TypedDict):
    """``GET /spaces/{name}``: a search space, as in its YAML file."""

    name: str
    task: str
    description: str
    params: dict[str, Param]
    not_searched: list[NotSearched]


class SpacesPublic(TypedDict):
    """``GET /spaces``: the bundled spaces' names."""

    data: list[str]
    count: int


# --- study specs ---------------------------------------------------------------------------------


class TaskSpec(TypedDict):
    """What a study trains."""

    family: str | None
    dataset: str
    target: str | None
    epochs: int
    val_fraction: float
    pretrained_weights: str | None


class Budget(TypedDict):
    """How much a study may spend."""

    trials: int | None
    seconds: float | None
    max_failures: int


class PrunerSpec(TypedDict):
    """A pruner by name, with its arguments."""

    name: str
    args: dict[str, Any]


class WarmStart(TypedDict):
    """The study whose best trials a new study runs first."""

    study: str
    top: int


class Objective(TypedDict):
    """One metric of a study of several objectives, with the direction that improves it."""

    metric: str
    direction: Literal["maximize", "minimize"] | None


class Bound(TypedDict):
    """A constraint's feasible range (inclusive); null: unbounded on that side."""

    min: float | None
    max: float | None


class StudySpec(TypedDict):
    """``GET /studies/{name}/spec``, ``PUT /studies/{name}/pruner``: the resolved spec."""

    name: str | None
    space: str | SearchSpace
    task: TaskSpec
    metric: str
    direction: Literal["maximize", "minimize"] | None
    objectives: list[Objective]
    constraints: dict[str, Bound]
    budget: Budget
    strategy: str
    pruner: PrunerSpec
    fixed: dict[str, Any]
    seed: int | None
    warm_start: WarmStart | None
    created_at: str | None


# --- study status --------------------------------------------------------------------------------


class RankedKnob(TypedDict):
    """A parameter's importance on the study's evidence, beside its checklist tier."""

    param: str
    importance: float
    tier: str


class PriorMisfit(TypedDict):
    """Where the study's evidence disagrees with the checklist's tiers."""

    message: str
    checklist_top: str
    evidence_top: str
    ranking: list[RankedKnob]
    trials_used: int


class PruningSummary(TypedDict):
    """How many trials the pruner stopped, and the epochs that saved."""

    pruned: int
    epochs_saved: int


class WarmStartReport(TypedDict):
    """What a warm start queued from its source study."""

    source: str
    enqueued: int
    skipped: list[str]


class StudyFailure(TypedDict):
    """Why a worker failed the study (an error that recurs on every trial)."""

    reason: str
    trial: int | None
    worker: str | None
    at: str


class StudyChange(TypedDict):
    """One change of a study's spec (``PATCH /studies/{name}``): ``changes`` maps a field to
    ``[old value, new value]``."""

    at: str
    by: str | None
    changes: dict[str, list[Any]]
    cleared_failure: str | None


class ParetoSummary(TypedDict):
    """A study of several objectives: the front's size and hypervolume."""

    objectives: list[str]
    size: int
    hypervolume: float | None
    reference_point: list[float] | None


class StudyStatus(TypedDict):
    """``GET /studies/{name}`` (and what creating, stopping, resuming, patching answer)."""

    name: str
    space: str
    direction: str
    metric: str
    strategy: str
    pruner: str
    counts: dict[str, int]
    finished: int
    budget_trials: int | None
    budget_seconds: float | None
    elapsed_seconds: float
    best_value: float | None
    best_trial: int | None
    created_at: str | None
    done: bool
    done_reason: str | None
    state: Literal["open", "stopped", "done", "failed"]
    stopped_at: str | None
    eta_seconds: float | None
    pruning: PruningSummary
    workers: int
    grid_points: int | None
    warm_start: WarmStartReport | None
    failure: StudyFailure | None
    history: list[StudyChange]
    prior_misfit: PriorMisfit | None
    pareto: ParetoSummary | None


class StudiesPublic(TypedDict):
    """``GET /studies``: a page of studies and how many there are in all."""

    data: list[StudyStatus]
    count: int


class EnqueuePublic(TypedDict):
    """``POST /studies/{name}/enqueue``: how many configs became waiting trials."""

    enqueued: int
    given: int


# --- trials --------------------------------------------------------------------------------------


class TrialRecord(TypedDict):
    """``GET /studies/{name}/trials/{number}``, ``GET /studies/{name}/best``: one trial.

    ``config`` is the full resolved config (defaults and fixed values included); ``params`` only
    what the sampler chose. ``intermediate_values`` maps an epoch (as a string) to its metric.
    """

    number: int
    state: str
    value: float | None
    config: dict[str, Any]
    params: dict[str, Any]
    intermediate_values: dict[str, float]
    datetime_start: str | None
    datetime_complete: str | None
    duration_seconds: float | None
    fail_reason: str | None
    fail_traceback: str | None
    prune_reason: str | None
    worker: str | None
    seed: int | None
    values: list[float | None] | None
    metrics: dict[str, float] | None
    infeasible: str | None


class ParetoFront(TypedDict):
    """``GET /studies/{name}/pareto``: the front (best in the first objective first), the
    hypervolume it dominates and the reference point (each objective's worst value so far)."""

    name: str
    objectives: list[Objective]
    trials: list[TrialRecord]
    hypervolume: float | None
    reference_point: list[float] | None
    complete: int


class TrialsPublic(TypedDict):
    """``GET /studies/{name}/trials``: a page of trials and how many there are in all."""

    data: list[TrialRecord]
    count: int


# --- analysis ------------------------------------------------------------------------------------


class ImportanceRow(TypedDict):
    """One parameter's importance beside its checklist tier, and whether the two agree."""

    param: str
    importance: float | None
    rank: int | None
    third: Literal["top", "middle", "bottom"] | None
    impact: Impact | None
    checklist: list[str]
    present_in: int
    verdict: Literal[
        "agrees",
        "matters more than the checklist says",
        "matters less than the checklist says",
        "not ranked",
    ]
    agrees: bool | None
    reason: str | None


class ImportanceReport(TypedDict):
    """``GET /studies/{name}/importance``."""

    study: str
    evaluator: Literal["ped_anova", "fanova"]
    metric: str
    direction: str
    seed: int | None
    trials_used: int
    trials_note: str
    rows: list[ImportanceRow]
    verdict_rule: str
    notes: list[str]


class ClassMetrics(TypedDict):
    """Precision, recall and F1 of one class."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


class ConfusionMatrix(TypedDict):
    """Counts of validation examples: ``matrix[true][predicted]``, in the order of ``labels``."""

    labels: list[str]
    matrix: list[list[int]]


class ResidualSummary(TypedDict):
    """The residuals ``predicted - true`` of a regression, summarized."""

    mean: float
    std: float
    min: float
    median: float
    max: float
    abs_p95: float


class WorstExample(TypedDict):
    """One of the highest-loss validation examples."""

    rank: int
    index: int
    true: str | float
    predicted: str | float
    loss: float
    confidence: float | None
    row: dict[str, float] | None
    file: str | None


class PriorCheck(TypedDict):
    """What the study's evidence says of the checklist's tiers; ``line`` says it in one line."""

    verdict: Literal["misfit", "agrees", "too_few", "unknown"]
    line: str
    finished: int
    trials_used: int
    ranking: list[RankedKnob]
    misfit: PriorMisfit | None


class ErrorReport(TypedDict):
    """``GET /studies/{name}/report``: the error analysis of a trial on the validation split.

    Classification fills ``accuracy``, ``macro_f1``, ``classes`` and ``confusion``; regression
    fills ``rmse``, ``mae`` and ``residuals``; the others are ``None``.
    """

    study: str | None
    trial: int | None
    kind: Literal["classification", "regression"]
    family: str
    examples: int
    accuracy: float | None
    macro_f1: float | None
    classes: list[ClassMetrics] | None
    confusion: ConfusionMatrix | None
    rmse: float | None
    mae: float | None
    residuals: ResidualSummary | None
    worst: list[WorstExample]
    plots: list[str]
    prior: PriorCheck | None


# --- workers -------------------------------------------------------------------------------------


class WorkerRecord(TypedDict):
    """One worker process, from its heartbeat row."""

    worker_id: str
    host: str
    pid: int
    device: str
    gpu_name: str | None
    gpu: str | None
    version: str
    started_at: str
    last_seen: str
    seconds_since_seen: float
    study: str | None
    trial_number: int | None
    trials_run: int
    live: bool


class WorkersPublic(TypedDict):
    """``GET /workers``: workers, newest heartbeat first."""

    data: list[WorkerRecord]
    count: int
