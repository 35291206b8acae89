"""One settings object for every hpsearch process, read from ``HPSEARCH_*`` environment variables.

The service, the dashboard, workers and the CLI read their configuration here and nowhere
else: each field below is one environment variable (``HPSEARCH_`` + the field's name in
capitals), with its default and what it means. Command-line options win over these where a
verb has one (``--storage``, ``--artifacts``, ...); the caller passes the option and falls back
to the setting.

:func:`get_settings` is the accessor: cached, and read again when an ``HPSEARCH_*`` variable
changes (a test's ``monkeypatch.setenv``, ``hpsearch serve`` handing its options to the app).
A value that does not parse raises :class:`~hpsearch.errors.UsageError` with one line naming
the variable and what it takes.

The heartbeat rule lives here too: a running trial (and a worker) is given
:data:`GRACE_HEARTBEATS` heartbeat intervals of silence before it counts as dead
(:func:`grace_period`).
"""

from __future__ import annotations

import functools
import os
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hpsearch.errors import UsageError

__all__ = [
    "ENV_PREFIX",
    "GRACE_HEARTBEATS",
    "Settings",
    "get_settings",
    "grace_period",
    "settings_error",
]

#: What every setting's environment variable starts with.
ENV_PREFIX = "HPSEARCH_"

#: Heartbeat intervals a running trial or a worker may stay silent before it counts as dead
#: (its trial is failed and retried; the worker is no longer live). Three, so that one late or
#: missed beat (a slow database, a long garbage collection) is never taken for a death.
GRACE_HEARTBEATS = 3

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no", ""})


def grace_period(heartbeat_seconds: int) -> int:
    """Seconds of silence after which a trial or worker beating every ``heartbeat_seconds``
    counts as dead: :data:`GRACE_HEARTBEATS` intervals (Optuna's ``grace_period``)."""
    return GRACE_HEARTBEATS * heartbeat_seconds


def _yes_no(value: Any, *, env: str, hint: str) -> Any:
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{env}={word!r} is not a yes/no value; {hint}")


def _split(value: Any, sep: str) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(sep) if part.strip()]
    return value


class Settings(BaseSettings):
    """Every ``HPSEARCH_*`` setting, with its default.

    Requests authenticate with API tokens kept (hashed) in the study database itself
    (``hpsearch token create NAME --scope read|write``): there is no shared secret to
    configure, and no secret has a working default. Empty (or blank) variables count as
    unset.
    Construct one with keyword arguments to override the environment (tests, ``serve``'s
    options); :func:`get_settings` gives the environment's.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    # -- where things are ------------------------------------------------------------------
    storage: str | None = None
    """Study database URL (``HPSEARCH_STORAGE``); ``None`` means ``sqlite:///hpsearch.db`` in
    the working directory (:func:`hpsearch.db.storage.resolve_storage_url`)."""
    server: str | None = None
    """The hpsearch service the client and the CLI's reads ask (``HPSEARCH_SERVER``); ``None``
    means ``http://127.0.0.1:8000``."""
    api_token: SecretStr | None = None
    """The API token the client sends (``HPSEARCH_API_TOKEN``); ``None``: no token is sent."""
    artifacts: str | None = None
    """Where workers keep trial predictions for reports (``HPSEARCH_ARTIFACTS``): a directory or
    ``s3://bucket/prefix``, ``off`` for none; ``None`` means beside a SQLite study database,
    else reports off (:func:`hpsearch.analysis.artifacts.open_artifact_store`)."""
    keep_artifacts: str | None = None
    """Which trials keep their predictions (``HPSEARCH_KEEP_ARTIFACTS``): ``best:N`` or ``all``;
    ``None`` means ``best:3`` (:func:`hpsearch.analysis.artifacts.parse_keep`)."""
    data_roots: Annotated[list[str], NoDecode] = []
    """Folders a worker may read datasets and weights from (``HPSEARCH_DATA_ROOTS``, separated
    by ``os.pathsep``); none: bundled datasets only (:mod:`hpsearch.data_roots`)."""
    checkpoint_dir: str | None = None
    """Where workers keep per-epoch checkpoints, one folder per study
    (``HPSEARCH_CHECKPOINT_DIR``); ``None``: no checkpoints."""

    # -- the service and the dashboard -----------------------------------------------------
    anonymous_reads: bool = False
    """When true, reads need no token (``HPSEARCH_ANONYMOUS_READS``); writes always need one."""
    allowed_hosts: Annotated[list[str], NoDecode] = []
    """Host names besides localhost, 127.0.0.1 and ::1 that requests may name in ``Host``
    (``HPSEARCH_ALLOWED_HOSTS``, comma-separated; ``*.example.com``, ``*`` for any); others get
    400 (:mod:`hpsearch.service.hosts`, against DNS rebinding)."""
    max_body_bytes: int = 1024 * 1024
    """Requests with larger bodies get 413 (``HPSEARCH_MAX_BODY_BYTES``)."""
    startup_retry_seconds: float = 30.0
    """How long the service, the dashboard and each worker retry their first connection to a
    PostgreSQL server still starting up or restarting (``HPSEARCH_STARTUP_RETRY_SECONDS``)."""
    cache_trials: int = Field(default=300_000, ge=0)
    """Trials the dashboard's trial cache keeps in memory across studies
    (``HPSEARCH_CACHE_TRIALS``; about 5 kB each): :mod:`hpsearch.db.cache`."""

    # -- workers ---------------------------------------------------------------------------
    heartbeat_seconds: int = Field(default=10, ge=1)
    """Seconds between a running trial's heartbeats (``HPSEARCH_HEARTBEAT_SECONDS``); a trial
    silent for :data:`GRACE_HEARTBEATS` times this is failed and retried."""
    max_retries: int = Field(default=3, ge=0)
    """How many times a trial whose worker died or was stopped is retried
    (``HPSEARCH_MAX_RETRIES``)."""
    cpu_amp: bool = False
    """Let ``train.amp`` autocast to bf16 off CUDA (``HPSEARCH_CPU_AMP=1``); off, such runs
    train in fp32 whatever ``train.amp`` says (:func:`hpsearch.train.core.device.cpu_amp_dtype`)."""

    @property
    def grace_seconds(self) -> int:
        """How long a trial or worker may go without a heartbeat before it counts as dead."""
        return grace_period(self.heartbeat_seconds)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: Any) -> Any:
        if isinstance(values, dict):  # "  " in a variable means unset, as "" does
            return {k: v for k, v in values.items() if not (isinstance(v, str) and not v.strip())}
        return values

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        return _split(value, ",")

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        return _split(value, os.pathsep)

    @field_validator("anonymous_reads", mode="before")
    @classmethod
    def _anonymous_reads(cls, value: Any) -> Any:
        return _yes_no(
            value,
            env=ENV_PREFIX + "ANONYMOUS_READS",
            hint="use true or false (reads need a token when false)",
        )

    @field_validator("cpu_amp", mode="before")
    @classmethod
    def _cpu_amp(cls, value: Any) -> Any:
        return _yes_no(
            value,
            env=ENV_PREFIX + "CPU_AMP",
            hint="set it to 1 to let train.amp use bf16 autocast on the CPU, or unset it to "
            "train there in fp32",
        )


def get_settings() -> Settings:
    """The settings of this process's environment; the same object until an ``HPSEARCH_*``
    variable changes. Raises :class:`UsageError` naming the variable when one does not parse."""
    return _settings_of(_environment())


def _environment() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)))


@functools.lru_cache(maxsize=8)
def _settings_of(_environment: tuple[tuple[str, str], ...]) -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        raise UsageError(settings_error(e)) from None


def settings_error(error: ValidationError) -> str:
    """A :class:`Settings` validation error as one line per variable: name, value, what to do."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"][:1]) or "?"
        env = ENV_PREFIX + field.upper()
        message = problem["msg"].removeprefix("Value error, ")
        if message.startswith(env):
            lines.append(message)  # the validator's own message names the variable
        else:
            said = f"{message[:1].lower()}{message[1:]}"
            lines.append(f"{env}={problem.get('input')!r}: {said}; fix it, or unset it")
    return "; ".join(lines)
