"""Service settings, read from ``HPSEARCH_*`` environment variables."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """What the service needs: the study database, and the token that guards writes."""

    model_config = SettingsConfigDict(env_prefix="HPSEARCH_", extra="ignore")

    storage: str | None = None
    """Study database URL; ``None`` means ``$HPSEARCH_STORAGE`` or the SQLite default."""
    api_token: SecretStr | None = None
    """When set, writes need ``Authorization: Bearer <token>``; reads stay open."""
    startup_retry_seconds: float = 30.0
    """How long to retry the first database connection (a database still starting up)."""
