"""A Python client of the hpsearch REST API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import yaml

from hpsearch.errors import HpsearchError

__all__ = ["Client", "ApiError", "ServiceUnreachable", "DEFAULT_SERVER", "read_spec_file"]

DEFAULT_SERVER = "http://127.0.0.1:8000"


class ApiError(HpsearchError):
    """The service answered with an error; ``status`` is the HTTP status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class ServiceUnreachable(HpsearchError):
    """No hpsearch service answers at the URL."""


def read_spec_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a study spec from a YAML (or JSON) file; raises :class:`HpsearchError` if unreadable."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise HpsearchError(f"cannot read study spec {str(path)!r}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise HpsearchError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise HpsearchError(f"{path}: a study spec is a mapping (name:, space:, task: ...)")
    return data


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text or response.reason_phrase
    if isinstance(detail, list):  # FastAPI's request-validation errors
        return "; ".join(
            f"{'.'.join(str(x) for x in err.get('loc', [])[1:]) or 'body'}: {err.get('msg')}"
            for err in detail
        )
    return str(detail)


class Client:
    """Talk to an hpsearch service.

    Args:
        server: base URL; ``$HPSEARCH_SERVER`` or ``http://127.0.0.1:8000`` by default.
        token: bearer token for writes; ``$HPSEARCH_API_TOKEN`` by default.
        timeout: seconds per request.
    """

    def __init__(
        self, server: str | None = None, *, token: str | None = None, timeout: float = 30.0
    ) -> None:
        self.server = (server or os.environ.get("HPSEARCH_SERVER") or DEFAULT_SERVER).rstrip("/")
        token = token or os.environ.get("HPSEARCH_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise ServiceUnreachable(
                f"no hpsearch service answers at {self.server} ({e}); start one with "
                "`hpsearch serve` or point --server / HPSEARCH_SERVER at it"
            ) from e
        if response.is_error:
            raise ApiError(response.status_code, _detail(response))
        return response.json()

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def create_study(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Create a study from a spec (a dict as in a study YAML); returns its status."""
        return self._request("POST", "/studies", json=spec)

    def list_studies(self, *, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        return self._request("GET", "/studies", params={"offset": offset, "limit": limit})

    def study(self, name: str) -> dict[str, Any]:
        """The study's status: counts by state, budget used, best value, done."""
        return self._request("GET", f"/studies/{name}")

    def spec(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/studies/{name}/spec")

    def trials(
        self, name: str, *, offset: int = 0, limit: int = 50, state: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if state:
            params["state"] = state
        return self._request("GET", f"/studies/{name}/trials", params=params)

    def trial(self, name: str, number: int) -> dict[str, Any]:
        return self._request("GET", f"/studies/{name}/trials/{number}")

    def best(self, name: str) -> dict[str, Any]:
        """The best trial with its full resolved config."""
        return self._request("GET", f"/studies/{name}/best")

    def prune(self, name: str, number: int) -> dict[str, Any]:
        """Ask the worker running trial ``number`` to prune it after its current epoch."""
        return self._request("POST", f"/studies/{name}/trials/{number}/prune")

    def spaces(self) -> dict[str, Any]:
        return self._request("GET", "/spaces")

    def space(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/spaces/{name}")
