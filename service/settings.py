"""The service's settings: :class:`hpsearch.settings.Settings`, with host names checked.

Every process reads the same ``HPSEARCH_*`` variables through :mod:`hpsearch.settings`; the
service adds only the check that each allowed host is a host name (:mod:`hpsearch.service.hosts`
lives here, beside the servers that answer to them).
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from hpsearch.service.hosts import parse_hosts
from hpsearch.settings import Settings as _Settings

__all__ = ["Settings"]


class Settings(_Settings):
    """What the service needs: the study database, whether reads need a token, which hosts it
    answers to (all of :class:`hpsearch.settings.Settings`).

    Requests authenticate with API tokens kept (hashed) in the study database itself:
    ``hpsearch token create NAME --scope read|write``. There is no shared secret to configure.
    """

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> list[str]:
        return parse_hosts(value)
