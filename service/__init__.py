"""The hpsearch REST service: a FastAPI app over the study database."""

from __future__ import annotations

from hpsearch.service.app import create_app
from hpsearch.service.settings import Settings

__all__ = ["create_app", "Settings"]
