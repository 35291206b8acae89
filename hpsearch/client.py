"""A Python client of the hpsearch REST API.

Results are the API's JSON as plain dicts; their types (:mod:`hpsearch.api_types`) name each
key, mirroring the response models in the service's OpenAPI document.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml

from hpsearch.api_types import (
    EnqueuePublic,
    ErrorReport,
    Health,
    ImportanceReport,
    SearchSpace,
    SpacesPublic,
    StudiesPublic,
    StudySpec,
    StudyStatus,
    ParetoFront,
    TrialRecord,
    TrialsPublic,
    WorkersPublic,
)
from hpsearch.errors import ApiError, HpsearchError, ServiceUnreachable
from hpsearch.settings import get_settings
from hpsearch.yaml_input import load_user_yaml, read_user_yaml_file, yaml_error_line

__all__ = [
    "DEFAULT_SERVER",
    "ApiError",
    "Client",
    "ServiceUnreachable",
    "masked_url",
    "read_spec_file",
]

DEFAULT_SERVER = "http://127.0.0.1:8000"


def read_spec_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a study spec from a YAML (or JSON) file; raises :class:`HpsearchError` if unreadable."""
    path = Path(path)
    try:
        data = load_user_yaml(read_user_yaml_file(path))
    except OSError as e:
        raise HpsearchError(f"cannot read study spec {str(path)!r}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise HpsearchError(yaml_error_line(e, str(path))) from e
    if not isinstance(data, dict):
        raise HpsearchError(f"{path}: a study spec is a mapping (name:, space:, task: ...)")
    return data


def masked_url(url: str) -> str:
    """The URL with any password in it shown as ``***``, fit for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text or response.reason_phrase
    if isinstance(detail, list):  # FastAPI's request-validation errors, loc[0] is "body"
        from hpsearch.spaces.messages import validation_message

        errors = [e for e in detail if isinstance(e, dict)]
        return validation_message(errors, skip=1) or str(detail)
    return str(detail)


class Client:
    """Talk to an hpsearch service.

    Args:
        server: base URL; ``$HPSEARCH_SERVER`` or ``http://127.0.0.1:8000`` by default.
        token: API token (``hpsearch token create``), sent as a bearer token on every request;
            ``$HPSEARCH_API_TOKEN`` by default. Reads need scope read, writes scope write.
        timeout: seconds per request.
    """

    def __init__(
        self, server: str | None = None, *, token: str | None = None, timeout: float = 30.0
    ) -> None:
        settings = get_settings()
        self.server = (server or settings.server or DEFAULT_SERVER).rstrip("/")
        if not token and settings.api_token is not None:
            token = settings.api_token.get_secret_value()
        self._sends_token = bool(token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self, method: str, path: str, *, text: bool = False, raw: bool = False, **kwargs: Any
    ) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise ServiceUnreachable(
                f"no hpsearch service answers at {masked_url(self.server)} ({e}); start one with "
                "`hpsearch serve` or point --server / HPSEARCH_SERVER at it"
            ) from e
        if response.is_error:
            raise ApiError(response.status_code, self._auth_hint(response))
        if raw:
            return response.content
        return response.text if text else response.json()

    def _auth_hint(self, response: httpx.Response) -> str:
        # The service says what it needs; say what this client sent and where that came from.
        detail = _detail(response)
        if response.status_code == 401 and not self._sends_token:
            return (
                f"{detail} [no token was sent: export HPSEARCH_API_TOKEN=<secret> "
                "(or pass token=...)]"
            )
        if response.status_code in (401, 403):
            return f"{detail} [the token sent came from token=... or $HPSEARCH_API_TOKEN]"
        return detail

    def health(self) -> Health:
        """``{"status": "ok"}`` when the service answers."""
        return self._request("GET", "/healthz")

    def create_study(self, spec: dict[str, Any]) -> StudyStatus:
        """Create a study from a spec (a dict as in a study YAML); returns its status."""
        return self._request("POST", "/studies", json=spec)

    def list_studies(
        self,
        *,
        offset: int = 0,
        limit: int = 100,
        state: str | None = None,
        prefix: str | None = None,
    ) -> StudiesPublic:
        """A page of studies, oldest first: ``state`` open|stopped|done, ``prefix`` of the name."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if state:
            params["state"] = state
        if prefix:
            params["prefix"] = prefix
        return self._request("GET", "/studies", params=params)

    def stop(self, name: str) -> StudyStatus:
        """Stop the study (no new trials; running ones finish); returns its status."""
        return self._request("POST", f"/studies/{name}/stop")

    def resume(self, name: str) -> StudyStatus:
        """Let a stopped or failed study take trials again; returns its status."""
        return self._request("POST", f"/studies/{name}/resume")

    def update_study(self, name: str, changes: dict[str, Any]) -> StudyStatus:
        """Change a study's budget or task data and let it continue (``PATCH /studies/{name}``).

        ``changes`` as ``{"budget": {"trials": 40, "max_failures": 20}, "task": {"target":
        "label"}}`` (totals, not increments); a failed study runs again. Returns its status,
        whose ``history`` records the change.
        """
        return self._request("PATCH", f"/studies/{name}", json=changes)

    def delete(self, name: str, *, force: bool = False) -> None:
        """Delete the study and its trials; ``force`` even while trials run (else status 409)."""
        self._request("DELETE", f"/studies/{name}", params={"force": force}, text=True)

    def set_pruner(
        self, name: str, pruner: str, args: dict[str, Any] | None = None
    ) -> StudySpec:
        """Replace the study's pruner (e.g. ``"asha", {"reduction_factor": 2}``); returns the spec."""
        body = {"name": pruner, "args": args or {}}
        return self._request("PUT", f"/studies/{name}/pruner", json=body)

    def enqueue(
        self, name: str, configs: dict[str, Any] | list[dict[str, Any]]
    ) -> EnqueuePublic:
        """Queue one config or several (``{param: value}``) to run first: ``{enqueued, given}``."""
        if isinstance(configs, dict):
            configs = [configs]
        return self._request("POST", f"/studies/{name}/enqueue", json={"configs": configs})

    def trials_csv(
        self, name: str, *, state: str | None = None, path: str | os.PathLike[str] | None = None
    ) -> str | None:
        """The study's trials as CSV: returned as text, or streamed into ``path`` (then None)."""
        params = {"state": state} if state else {}
        url = f"/studies/{name}/trials.csv"
        if path is None:
            return self._request("GET", url, params=params, text=True)
        try:
            with self._http.stream("GET", url, params=params) as response:
                if response.is_error:
                    response.read()
                    raise ApiError(response.status_code, self._auth_hint(response))
                with open(path, "w", newline="") as f:
                    f.writelines(response.iter_text())
        except httpx.TransportError as e:
            raise ServiceUnreachable(
                f"no hpsearch service answers at {masked_url(self.server)} ({e}); start one with "
                "`hpsearch serve` or point --server / HPSEARCH_SERVER at it"
            ) from e
        return None

    def study(self, name: str) -> StudyStatus:
        """The study's status: counts by state, budget used, best value, done, and
        ``prior_misfit`` (where its evidence disagrees with the checklist's tiers, or None)."""
        return self._request("GET", f"/studies/{name}")

    def spec(self, name: str) -> StudySpec:
        """The study's resolved spec (defaults filled in), as stored with the study."""
        return self._request("GET", f"/studies/{name}/spec")

    def trials(
        self, name: str, *, offset: int = 0, limit: int = 50, state: str | None = None
    ) -> TrialsPublic:
        """A page of the study's trials by number: ``{data, count}``."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if state:
            params["state"] = state
        return self._request("GET", f"/studies/{name}/trials", params=params)

    def trial(self, name: str, number: int) -> TrialRecord:
        """One trial by number."""
        return self._request("GET", f"/studies/{name}/trials/{number}")

    def best(self, name: str) -> TrialRecord:
        """The best trial with its full resolved config (several objectives: the front's best
        in the first objective)."""
        return self._request("GET", f"/studies/{name}/best")

    def pareto(self, name: str) -> ParetoFront:
        """The study's Pareto front, its hypervolume and reference point (one objective: the
        best trial alone)."""
        return self._request("GET", f"/studies/{name}/pareto")

    def importance(self, name: str, *, evaluator: str = "ped_anova") -> ImportanceReport:
        """Which parameters mattered, each beside its checklist tier (``ped_anova`` or ``fanova``).

        Raises :class:`ApiError` with status 409 while the study has fewer than 2 complete trials.
        """
        return self._request("GET", f"/studies/{name}/importance", params={"evaluator": evaluator})

    def report(self, name: str, *, trial: int | None = None) -> ErrorReport:
        """The error analysis of the study's best trial (or trial number ``trial``).

        Per-class precision, recall, F1 and the confusion matrix (or RMSE, MAE, residuals),
        and the highest-loss validation examples. Raises :class:`ApiError` 404 saying why when
        the trial kept no predictions (pruned or failed, not among the best kept, reports off).
        """
        params = {} if trial is None else {"trial": trial}
        return self._request("GET", f"/studies/{name}/report", params=params)

    def report_plot(self, name: str, plot: str, *, trial: int | None = None) -> bytes:
        """One plot of the report as PNG bytes: ``confusion``, ``residuals`` or ``worst``."""
        params = {} if trial is None else {"trial": trial}
        path = f"/studies/{name}/report/plots/{plot}.png"
        return self._request("GET", path, params=params, raw=True)

    def model(self, name: str, number: int) -> bytes:
        """Trial ``number``'s final weights, the bytes of a safetensors file
        (``safetensors.torch.load(data)`` gives the state dict).

        Raises :class:`ApiError` 404 saying why when the trial kept no weights (pruned or
        failed, outside the best N kept, a user --objective, no artifact store).
        """
        return self._request("GET", f"/studies/{name}/trials/{number}/model", raw=True)

    def export(self, name: str, *, trial: int | None = None) -> tuple[int, bytes]:
        """What ``hpsearch export`` writes for the study's best trial (or trial number
        ``trial``), as ``(trial number, zip bytes)``: model.safetensors, config.json, spec.json,
        load.py and README.md. Raises :class:`ApiError` 404 as :meth:`model` does.
        """
        number = self.best(name)["number"] if trial is None else trial
        return number, self._request("GET", f"/studies/{name}/trials/{number}/export", raw=True)

    def prune(self, name: str, number: int) -> TrialRecord:
        """Ask the worker running trial ``number`` to prune it after its current epoch."""
        return self._request("POST", f"/studies/{name}/trials/{number}/prune")

    def workers(self, *, all: bool = False, study: str | None = None) -> WorkersPublic:
        """The live workers (``all=True``: also stopped and dead ones), newest heartbeat first.

        With ``study``, only those running one of that study's trials now.
        """
        params: dict[str, Any] = {"all": all}
        if study:
            params["study"] = study
        return self._request("GET", "/workers", params=params)

    def metrics(self) -> str:
        """The service's Prometheus metrics in text format (parse with ``prometheus_client``)."""
        return self._request("GET", "/metrics", text=True)

    def spaces(self) -> SpacesPublic:
        """The names of the bundled search spaces."""
        return self._request("GET", "/spaces")

    def space(self, name: str) -> SearchSpace:
        """One bundled search space, as in its YAML file."""
        return self._request("GET", f"/spaces/{name}")
