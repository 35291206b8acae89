"""FastAPI dependencies: settings, the study database, the write guard."""

from __future__ import annotations

import secrets
from typing import Annotated

import optuna
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hpsearch.storage import open_storage
from service.settings import Settings

__all__ = ["SettingsDep", "StorageDep", "WriteAccess", "get_settings", "get_storage"]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_storage(settings: SettingsDep) -> optuna.storages.RDBStorage:
    return open_storage(settings.storage)


StorageDep = Annotated[optuna.storages.RDBStorage, Depends(get_storage)]

_bearer = HTTPBearer(auto_error=False)


def require_write(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Let a write through only with the service's token, when one is configured."""
    if settings.api_token is None:
        return
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this write needs a token: send 'Authorization: Bearer <HPSEARCH_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(credentials.credentials, settings.api_token.get_secret_value()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the token is not valid for this service")


WriteAccess = Depends(require_write)
