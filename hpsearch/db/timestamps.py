"""Timestamps as users see them: aware, in UTC, whatever the database stored.

The study database keeps naive times. Optuna writes each trial's start and end with the
writing process's local clock: :data:`UtcDatetime` reads a naive time as local time of this
process (the same clock, on one machine or in containers that all run on UTC). hpsearch's own
tables (workers, tokens) take the database's clock in UTC (:func:`utc_now`, whatever the
server's or the session's time zone): :data:`DbUtcDatetime` reads those. Every model that
leaves hpsearch (API responses, ``--json`` output) declares its times as one of the two, so
that the ``date-time`` of the OpenAPI schema always carries its offset (``...+00:00``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, TypeAlias

from pydantic import AfterValidator
from sqlalchemy import DateTime
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["DbUtcDatetime", "UtcDatetime", "as_utc", "db_as_utc", "utc_now"]


class utc_now(FunctionElement):  # noqa: N801 - an SQL function, named like sqlalchemy.func's
    """The database's clock as naive UTC: ``CURRENT_TIMESTAMP`` on SQLite (UTC already), and
    ``now() AT TIME ZONE 'UTC'`` on PostgreSQL, whose ``now()`` would otherwise be stored in the
    session's time zone."""

    type = DateTime()
    inherit_cache = True


@compiles(utc_now)
def _utc_now(_element: utc_now, _compiler: object, **_kw: object) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(utc_now, "postgresql")
def _utc_now_postgresql(_element: utc_now, _compiler: object, **_kw: object) -> str:
    return "(now() AT TIME ZONE 'UTC')"


def as_utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC; a naive one is taken as this process's local time."""
    return moment.astimezone(dt.UTC)


def db_as_utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC; a naive one is taken as UTC (written by :func:`utc_now`)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


#: A datetime field of Optuna's trial times: always an aware UTC time (see the module's doc).
UtcDatetime: TypeAlias = Annotated[dt.datetime, AfterValidator(as_utc)]
#: A datetime field of hpsearch's own tables (:func:`utc_now`): always an aware UTC time.
DbUtcDatetime: TypeAlias = Annotated[dt.datetime, AfterValidator(db_as_utc)]
