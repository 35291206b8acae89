"""The errors hpsearch raises: one small tree under :class:`HpsearchError`.

Library errors (Optuna's, SQLAlchemy's, pydantic's) are translated into these where they enter
hpsearch, so the service and the CLI can turn any of them into a message a person can act on.
"""

from __future__ import annotations

__all__ = [
    "HpsearchError",
    "NotFound",
    "SpaceError",
    "SpaceNotFound",
    "SpecError",
    "StudyNotFound",
    "StudyExists",
    "StudyBusy",
    "TrialNotFound",
    "TrialNotRunning",
    "ArtifactNotFound",
    "StorageUnavailable",
    "ArtifactStoreUnavailable",
    "TrainingDiverged",
    "CudaOutOfMemory",
    "NotEnoughTrials",
    "TaskError",
    "WorkerSetupError",
    "DataOutsideRoots",
    "StudyFailed",
    "WorkerCannotServe",
    "UsageError",
    "TokenExists",
    "TokenNotFound",
    "ApiError",
    "ServiceUnreachable",
    "WorkerStopped",
]


class HpsearchError(Exception):
    """Base class of every error hpsearch raises on purpose."""


class NotFound(HpsearchError, LookupError):
    """What was asked for (a study, a trial, a token, a space, an artifact) is not there.

    The service answers every one of these with 404; catch this to handle any of them.
    """


class SpaceError(HpsearchError, ValueError):
    """A search space (a YAML file or a dict) is malformed."""


class SpaceNotFound(SpaceError, NotFound):
    """No bundled search space of that name."""


class SpecError(HpsearchError, ValueError):
    """A study spec is malformed or does not match its search space."""


class StudyNotFound(NotFound):
    """No study of that name in the study database."""


class StudyExists(HpsearchError):
    """A study of that name already exists."""


class StudyBusy(HpsearchError):
    """The study has running trials, so it cannot be deleted without ``force``."""


class TrialNotFound(NotFound):
    """No trial of that number in the study."""


class TrialNotRunning(HpsearchError):
    """The trial has already finished, so it cannot be pruned or changed."""


class ArtifactNotFound(NotFound):
    """The trial exists but kept no artifact to build its report from; the message says why.

    Not a :class:`TrialNotFound`: the trial is there, what was asked of it (its report, a plot)
    is not.
    """


class StorageUnavailable(HpsearchError):
    """The study database cannot be reached or is not a supported kind."""


class ArtifactStoreUnavailable(StorageUnavailable):
    """The artifact store (a folder or an S3 bucket) cannot be read or written."""


class TrainingDiverged(HpsearchError, ArithmeticError):
    """Training produced a non-finite loss; the trial fails with this reason."""


class CudaOutOfMemory(HpsearchError):
    """The config does not fit in GPU memory even at the smallest batch."""


class NotEnoughTrials(HpsearchError):
    """The study has too few complete trials (or only equal values) to answer the question yet."""


class TaskError(HpsearchError, ValueError):
    """The study's task cannot run on this worker whatever the trial's config: a dataset or
    weights file that is missing or unreadable, a column the task names that is not there.

    The error recurs on every trial, so the worker fails the study at the first one (see
    :func:`hpsearch.studies.fail_study`) instead of spending its budget; a user's own function
    may raise it for the same effect. Fix the task and continue the study
    (:func:`hpsearch.studies.patch_study`).
    """


class WorkerSetupError(HpsearchError, ValueError):
    """This worker's own setup keeps it from running the study's task, not the study: its data
    roots, a package it lacks. Another worker set up for the study can run it.

    The worker fails the trial with this one-line reason and queues it again (it costs the study
    no trial and no failure), stops serving the study and says how to restart it
    (:class:`WorkerCannotServe`); the study stays open for other workers.
    """


class DataOutsideRoots(WorkerSetupError):
    """A spec names a file outside the data roots this worker may read (see
    :mod:`hpsearch.data_roots`): restart the worker with ``--data-root DIR`` naming its folder."""


class StudyFailed(HpsearchError):
    """The study a worker served was failed by an error that recurs on every trial; the message
    says which, and how to fix the study and continue it."""


class WorkerCannotServe(HpsearchError):
    """This worker stopped serving a study over a :class:`WorkerSetupError` (its data roots, a
    package it lacks); the study is open for other workers. The message says how to restart this
    one, and the worker exits non-zero when that was the only study it served."""


class UsageError(HpsearchError, ValueError):
    """A command-line option or argument has a value hpsearch cannot use."""


class TokenExists(HpsearchError):
    """An API token of that name already exists (revoked ones keep their name)."""


class TokenNotFound(NotFound):
    """No API token of that name in the study database."""


class ApiError(HpsearchError):
    """The service answered with an error; ``status`` is the HTTP status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class ServiceUnreachable(HpsearchError):
    """No hpsearch service answers at the URL."""


class WorkerStopped(BaseException):
    """SIGTERM or SIGINT reached the worker; the running trial is failed, queued again, and the
    worker exits.

    Outside the :class:`HpsearchError` tree on purpose: like :class:`KeyboardInterrupt`, it must
    pass through a user objective's ``except Exception``.
    """
