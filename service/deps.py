"""FastAPI dependencies: settings, the study database, and the token guards of reads and writes.

Projects: a token may be limited to the studies whose names start with a prefix
(:attr:`hpsearch.db.tokens.TokenInfo.project`). The limit is enforced here and only here:

- :data:`StudyAccess` guards every route with a study ``{name}`` in its path (reads, writes,
  deletes): a study outside the token's project answers 404 with the same message whether it
  exists or not, so that a token learns nothing about other teams' studies;
- :data:`StudyPrefix` narrows ``GET /studies`` (its data and its count) to the project;
- :data:`ProjectSpec` makes ``POST /studies`` create inside the project: 403 for a name (or a
  ``warm_start.study``) outside it, and a generated name starts with the project;
- :data:`FleetAccess` keeps ``/workers`` and ``/metrics``, which are about every study, to
  tokens without a project (403 for a project token).

A token without a project (and an anonymous read, where those are on) sees every study.
"""

from __future__ import annotations

from typing import Annotated

import optuna
from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hpsearch.db import tokens
from hpsearch.errors import UsageError
from hpsearch.db.storage import open_storage
from hpsearch.studies import StudySpec
from hpsearch.service.settings import Settings

__all__ = [
    "CurrentToken",
    "FleetAccess",
    "ProjectSpec",
    "ReadAccess",
    "SettingsDep",
    "StorageDep",
    "StudyAccess",
    "StudyPrefix",
    "WriteAccess",
    "get_settings",
    "get_storage",
]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_storage(settings: SettingsDep) -> optuna.storages.RDBStorage:
    return open_storage(settings.storage)


StorageDep = Annotated[optuna.storages.RDBStorage, Depends(get_storage)]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token: `hpsearch token create NAME --scope read|write` prints one.",
)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _how_to_get(scope: str) -> str:
    return (
        f"create one on the study database with `hpsearch token create NAME --scope {scope}` "
        "and send it as 'Authorization: Bearer <token>' (the hpsearch CLI and client send "
        "$HPSEARCH_API_TOKEN)"
    )


def current_token(
    storage: StorageDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> tokens.TokenInfo | None:
    """The token the request presents; ``None`` when it presents none; 401 when it is bad."""
    if credentials is None:
        return None
    token = tokens.authenticate(storage, credentials.credentials)
    if token is None:
        raise _unauthorized(f"the API token is unknown or revoked: {_how_to_get('read')}")
    return token


CurrentToken = Annotated[tokens.TokenInfo | None, Depends(current_token)]


def _require(scope: str, token: tokens.TokenInfo | None) -> None:
    if token is None:
        raise _unauthorized(
            f"this request needs an API token with scope {scope}: {_how_to_get(scope)}"
        )
    if not token.allows(scope):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"the API token {token.name!r} has scope {','.join(token.scopes)}; this request "
            f"needs {scope}: create a token with `hpsearch token create NAME --scope {scope}`",
        )


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def require_read(request: Request, settings: SettingsDep, token: CurrentToken) -> None:
    """Let a read through with any valid token, or with none when anonymous reads are on.

    Guards whole routers. A request with another method than GET/HEAD/OPTIONS is a write and
    needs scope write here already, so that a write route that forgot :data:`WriteAccess` is
    still guarded, and so that the 401 of a write names the scope it needs.
    """
    scope = "read" if request.method in _SAFE_METHODS else "write"
    if token is None and scope == "read" and settings.anonymous_reads:
        return
    _require(scope, token)


def require_write(token: CurrentToken) -> None:
    """Let a write through only with a valid token of scope write (never anonymously)."""
    _require("write", token)


ReadAccess = Depends(require_read)
WriteAccess = Depends(require_write)


def _limited(token: tokens.TokenInfo | None) -> str | None:
    """The project of the request's token; ``None``: the request may see every study."""
    return token.project if token is not None else None


def _limit_text(token: tokens.TokenInfo) -> str:
    return (
        f"the API token {token.name!r} is limited to project {token.project!r} "
        f"(the studies whose names start with {token.project!r})"
    )


def require_study(request: Request, token: CurrentToken) -> None:
    """404 for a study ``{name}`` in the path that the token's project does not cover.

    Guards whole routers (those under ``/studies/{name}``); a route without ``{name}`` passes.
    The answer does not depend on whether the study exists.
    """
    name = request.path_params.get("name")
    if name is None or token is None or token.covers(name):
        return
    raise HTTPException(
        status.HTTP_404_NOT_FOUND,
        f"no study named {name!r} for this token: {_limit_text(token)}; "
        "use a token without a project for other studies",
    )


def study_prefix(
    token: CurrentToken,
    prefix: Annotated[str | None, Query(max_length=128, description="name prefix")] = None,
) -> str | None:
    """The name prefix a study listing filters by: the query's, narrowed to the project.

    403 for a prefix that no study of the project can start with.
    """
    project = _limited(token)
    if project is None or (prefix is not None and prefix.startswith(project)):
        return prefix
    if prefix is None or project.startswith(prefix):
        return project
    assert token is not None
    raise HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"prefix {prefix!r} is outside the project: {_limit_text(token)}; "
        f"ask for a prefix that starts with {project!r}, or for none",
    )


def project_spec(spec: StudySpec, token: CurrentToken) -> StudySpec:
    """The spec of a study to create, held to the token's project.

    403 when it names a study (or a ``warm_start.study``) outside the project; without a name,
    one is generated inside it (:func:`hpsearch.db.tokens.project_study_name`).
    """
    project = _limited(token)
    if project is None:
        return spec
    assert token is not None
    if spec.name is not None and not token.covers(spec.name):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"cannot create study {spec.name!r}: {_limit_text(token)}; name it "
            f"{project + '...'!r}, or leave the name out to get one generated inside the project",
        )
    if spec.warm_start is not None and not token.covers(spec.warm_start.study):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"warm_start.study {spec.warm_start.study!r} is outside the project: "
            f"{_limit_text(token)}; warm-start from one of the project's studies",
        )
    if spec.name is not None:
        return spec
    space = spec.space if isinstance(spec.space, str) else spec.space.name
    try:
        name = tokens.project_study_name(project, space=space)
    except UsageError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from e
    return spec.model_copy(update={"name": name})


def require_fleet(token: CurrentToken) -> None:
    """403 for a project token: the fleet (workers, metrics) is about every study."""
    if _limited(token) is None:
        return
    assert token is not None
    raise HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"{_limit_text(token)}, and this route covers every study's workers and metrics: "
        "use a token without a project (`hpsearch token create NAME --scope read`); a "
        "project's own studies show their live workers in GET /studies/{name}",
    )


StudyAccess = Depends(require_study)
StudyPrefix = Annotated[str | None, Depends(study_prefix)]
ProjectSpec = Annotated[StudySpec, Depends(project_spec)]
FleetAccess = Depends(require_fleet)
