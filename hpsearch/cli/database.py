"""The REST client's methods done straight on the study database, for whoever holds its URL.

``hpsearch status --storage URL`` (and every verb that takes ``--storage``) works through
:class:`DatabaseClient`: the same operations of :mod:`hpsearch.studies` the service's routes
call, returning the same JSON as :class:`hpsearch.client.Client`, so a CLI verb does not care
which one it holds. Like Optuna's own CLI, holding the database URL is the permission: no token
is asked for.

Opening never creates a database, except for :meth:`DatabaseClient.create_study` (the first
study of a new database): a mistyped URL says that the file does not exist instead of answering
"no studies yet" from a new, empty one. Which one a verb holds, this or the service's client, is
decided in :mod:`hpsearch.cli.sources`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import optuna

from hpsearch import studies
from hpsearch.db.storage import open_storage, redact, resolve_storage_url

__all__ = ["DatabaseClient"]


class DatabaseClient:
    """Read and change studies in the study database at ``storage`` (a URL).

    Args:
        storage: the study database URL; ``$HPSEARCH_STORAGE`` or the SQLite default if None.
        create: whether opening may create the database (only for submitting a study).
    """

    def __init__(self, storage: str | None = None, *, create: bool = False) -> None:
        self.storage_url = resolve_storage_url(storage)
        self._storage: optuna.storages.RDBStorage = open_storage(self.storage_url, create=create)

    def __repr__(self) -> str:
        return f"DatabaseClient({redact(self.storage_url)!r})"

    def close(self) -> None:
        """Nothing to close: the storage is shared within the process."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_study(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Validate the spec and create the study, as ``POST /studies``; returns its status."""
        created = studies.create_study(self._storage, spec, allow_space_paths=False)
        assert created.name is not None  # create_study names every study it creates
        return self.study(created.name)

    def list_studies(
        self,
        *,
        offset: int = 0,
        limit: int = 2**31 - 1,
        state: studies.StudyState | None = None,
        prefix: str | None = None,
    ) -> dict[str, Any]:
        """Studies, oldest first: ``{data, count}`` as ``GET /studies``."""
        page, count = studies.page_studies(
            self._storage, offset=offset, limit=limit, state=state, prefix=prefix
        )
        return {"data": [s.model_dump(mode="json") for s in page], "count": count}

    def study(self, name: str) -> dict[str, Any]:
        """The study's status, as ``GET /studies/{name}``."""
        return studies.study_status(self._storage, name).model_dump(mode="json")

    def spec(self, name: str) -> dict[str, Any]:
        """The study's resolved spec, as ``GET /studies/{name}/spec``."""
        return studies.load_spec(self._storage, name).model_dump(mode="json")

    def best(self, name: str) -> dict[str, Any]:
        """The best trial with its full resolved config."""
        return studies.best_trial(self._storage, name).model_dump(mode="json")

    def pareto(self, name: str) -> dict[str, Any]:
        """The study's Pareto front, as ``GET /studies/{name}/pareto``."""
        return studies.pareto_front(self._storage, name).model_dump(mode="json")

    def trials(
        self, name: str, *, offset: int = 0, limit: int = 50, state: str | None = None
    ) -> dict[str, Any]:
        """A page of the study's trials by number: ``{data, count}``."""
        page, count = studies.list_trials(
            self._storage, name, offset=offset, limit=limit, state=state
        )
        return {"data": [t.model_dump(mode="json") for t in page], "count": count}

    def trial(self, name: str, number: int) -> dict[str, Any]:
        """One trial by number."""
        return studies.get_trial(self._storage, name, number).model_dump(mode="json")

    def trials_csv(
        self, name: str, *, state: str | None = None, path: str | None = None
    ) -> str | None:
        """The study's trials as CSV: returned as text, or written into ``path`` (then None)."""
        from hpsearch.db.export import trials_csv

        lines = trials_csv(self._storage, name, state=state)
        if path is None:
            return "".join(lines)
        with open(path, "w", newline="") as f:
            f.writelines(lines)
        return None

    def stop(self, name: str) -> dict[str, Any]:
        """Stop the study (no new trials; running ones finish); returns its status."""
        return studies.stop_study(self._storage, name).model_dump(mode="json")

    def resume(self, name: str) -> dict[str, Any]:
        """Let a stopped study take trials again; returns its status."""
        return studies.resume_study(self._storage, name).model_dump(mode="json")

    def update_study(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change the study's budget or task data and let it continue; returns its status."""
        return studies.patch_study(self._storage, name, changes).model_dump(mode="json")

    def delete(self, name: str, *, force: bool = False) -> None:
        """Delete the study and its trials; ``force`` even while trials run."""
        studies.delete_study(self._storage, name, force=force)

    def set_pruner(
        self, name: str, pruner: str, args: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Replace the study's pruner; returns the updated spec."""
        spec = studies.set_pruner(self._storage, name, {"name": pruner, "args": args or {}})
        return spec.model_dump(mode="json")

    def enqueue(
        self, name: str, configs: dict[str, Any] | Sequence[dict[str, Any]]
    ) -> dict[str, Any]:
        """Queue one config or several to run first: ``{enqueued, given}``."""
        if isinstance(configs, dict):
            configs = [configs]
        enqueued = studies.enqueue_configs(self._storage, name, list(configs))
        return {"enqueued": enqueued, "given": len(configs)}

    def prune(self, name: str, number: int) -> dict[str, Any]:
        """Ask the worker running trial ``number`` to prune it after its current epoch."""
        return studies.request_prune(self._storage, name, number).model_dump(mode="json")

    def importance(self, name: str, *, evaluator: str = "ped_anova") -> dict[str, Any]:
        """Which parameters mattered, each beside its checklist tier."""
        from hpsearch.analysis.importance import parameter_importance

        report = parameter_importance(self._storage, name, evaluator=evaluator)
        return report.model_dump(mode="json")

    def workers(self, *, all: bool = False, study: str | None = None) -> dict[str, Any]:
        """The live workers (``all=True``: also stopped and dead ones), newest heartbeat first."""
        from hpsearch.db import fleet

        found = fleet.list_workers(self._storage, live_only=not all, study=study)
        return {"data": [w.model_dump(mode="json") for w in found], "count": len(found)}
