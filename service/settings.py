"""Service settings, read from ``HPSEARCH_*`` environment variables."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hpsearch.service.hosts import parse_hosts

__all__ = ["Settings"]


class Settings(BaseSettings):
    """What the service needs: the study database, and whether reads need a token.

    Requests authenticate with API tokens kept (hashed) in the study database itself:
    ``hpsearch token create NAME --scope read|write``. There is no shared secret to configure.
    """

    model_config = SettingsConfigDict(env_prefix="HPSEARCH_", extra="ignore")

    storage: str | None = None
    """Study database URL; ``None`` means ``$HPSEARCH_STORAGE`` or the SQLite default."""
    anonymous_reads: bool = False
    """When true, reads need no token (``HPSEARCH_ANONYMOUS_READS``); writes always need one."""
    allowed_hosts: Annotated[list[str], NoDecode] = []
    """Host names besides localhost, 127.0.0.1 and ::1 that requests may name in ``Host``
    (``HPSEARCH_ALLOWED_HOSTS``, comma-separated; ``*.example.com``, ``*`` for any); others get
    400 (:mod:`hpsearch.service.hosts`, against DNS rebinding)."""
    max_body_bytes: int = 1024 * 1024
    """Requests with larger bodies get 413 (``HPSEARCH_MAX_BODY_BYTES``)."""
    startup_retry_seconds: float = 30.0
    """How long to retry the first database connection (a database still starting up)."""
    artifacts: str | None = None
    """Where workers keep trial predictions for reports (``HPSEARCH_ARTIFACTS``): a directory or
    ``s3://bucket/prefix``; ``None`` means beside a SQLite study database, else reports off."""

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> list[str]:
        return parse_hosts(value)
