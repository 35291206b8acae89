"""FastAPI dependencies: settings, the study database, and the token guards of reads and writes."""

from __future__ import annotations

from typing import Annotated

import optuna
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hpsearch import tokens
from hpsearch.storage import open_storage
from service.settings import Settings

__all__ = [
    "CurrentToken",
    "ReadAccess",
    "SettingsDep",
    "StorageDep",
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
