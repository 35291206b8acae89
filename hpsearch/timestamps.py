"""Timestamps as users see them: aware, in UTC, whatever the database stored.

The study database keeps naive times: Optuna writes each trial's start and end with the
writing process's local clock, and hpsearch's own tables take the database's ``now()``. Every
model that leaves hpsearch (API responses, ``--json`` output) declares its times as
:data:`UtcDatetime`, which reads a naive time as local time of this process (the same clock,
on one machine or in containers that all run on UTC) and answers it in UTC, so that the
``date-time`` of the OpenAPI schema always carries its offset (``...+00:00``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, TypeAlias

from pydantic import AfterValidator

__all__ = ["UtcDatetime", "as_utc"]


def as_utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC; a naive one is taken as this process's local time."""
    return moment.astimezone(dt.UTC)


#: A datetime field that always holds an aware UTC time (see the module's docstring).
UtcDatetime: TypeAlias = Annotated[dt.datetime, AfterValidator(as_utc)]
