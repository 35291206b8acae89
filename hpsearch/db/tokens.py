"""API tokens of the service: create, list, revoke, and authenticate a secret.

Tokens live in the study database (table ``hpsearch_api_tokens``, see :mod:`hpsearch.db.tables`),
so every service process over that database knows the same tokens and a revocation takes
effect at the next request. Only the SHA-256 hex digest of a secret is stored: the secret itself
(``hps_`` + 43 URL-safe characters) is returned once, by :func:`create_token`, and never again.

A token has the scope ``read`` or ``write``; ``write`` implies ``read``. A token may also be
limited to a *project*: the studies whose names start with a given prefix (``team-a`` covers
``team-a-mlp``). A token without a project covers every study; an unlimited write token is an
admin token (it can delete any team's study), so give teams project tokens. Times are the
database's clock in UTC (:func:`hpsearch.db.timestamps.utc_now`), naive.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy

from hpsearch.errors import TokenExists, TokenNotFound, UsageError
from hpsearch.db.tables import api_tokens
from hpsearch.db.timestamps import utc_now

__all__ = [
    "SCOPES",
    "SECRET_PREFIX",
    "TokenInfo",
    "check_project",
    "project_study_name",
    "authenticate",
    "create_token",
    "hash_secret",
    "list_tokens",
    "revoke_token",
]

#: The scopes a token can have, weakest first; each implies the ones before it.
SCOPES = ("read", "write")

#: Every secret starts with this, so that a leaked one is easy to recognize (and to scan for).
SECRET_PREFIX = "hps_"

#: ``last_used_at`` is refreshed at most this often, so that reads do not each cost a write.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,254}")
#: A project is a study-name prefix: the characters of a study name (hpsearch.studies).
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class TokenInfo:
    """What is known about a token, never its secret nor its hash."""

    name: str
    scopes: tuple[str, ...]
    """``("read",)`` or ``("read", "write")``."""
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    """When a request last authenticated with it (to the minute); ``None``: never."""
    revoked_at: dt.datetime | None
    project: str | None = None
    """The study-name prefix the token is limited to; ``None``: every study (unlimited; with
    scope write, an admin token)."""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def covers(self, study_name: str) -> bool:
        """Whether the token's project includes the study ``study_name`` (always, without one).

        A project ``team-a`` covers ``team-a``, ``team-a-mlp`` and ``team-a.v2``: every name
        that starts with the prefix. Says nothing about scope or revocation: see :meth:`allows`.
        """
        return self.project is None or study_name.startswith(self.project)

    def allows(self, scope: str) -> bool:
        """Whether the token grants ``scope`` (``write`` implies ``read``); revoked ones grant none."""
        return not self.revoked and scope in self.scopes


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest of a secret: what the table stores and looks tokens up by."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    asked = {scopes} if isinstance(scopes, str) else set(scopes)
    unknown = sorted(asked - set(SCOPES))
    if unknown or not asked:
        raise UsageError(
            f"unknown token scope {', '.join(map(repr, unknown)) or '(none given)'}: "
            f"use {' or '.join(SCOPES)} (write implies read)"
        )
    strongest = max(SCOPES.index(s) for s in asked)
    return SCOPES[: strongest + 1]


def check_project(project: str) -> str:
    """``project`` if it can be a study-name prefix, else :class:`UsageError` saying why.

    The rules are a study name's (hpsearch.studies): 1-128 letters, digits, ``.``, ``_`` or
    ``-``, starting with a letter or digit.
    """
    if not isinstance(project, str) or not _PROJECT.fullmatch(project):
        raise UsageError(
            f"token project {project!r}: a project is a study-name prefix, so use 1-128 "
            "letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. team-a)"
        )
    return project


def project_study_name(project: str, *, space: str | None = None) -> str:
    """A fresh study name inside ``project``, for a spec that names none.

    ``<project>-<space>-<UTC time>-<4 hex>`` (the form hpsearch generates without a project,
    prefixed), without the space when the name would be too long; no ``-`` is added after a
    project that ends with ``-``, ``.`` or ``_``. Raises :class:`UsageError` when even the
    shortest form exceeds a study name's 128 characters.
    """
    stamp = f"{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    start = project if project.endswith(("-", ".", "_")) else project + "-"
    candidates = [f"{start}{space}-{stamp}"] if space else []
    for name in [*candidates, start + stamp]:
        if _PROJECT.fullmatch(name):
            return name
    raise UsageError(
        f"project {project!r} is too long for hpsearch to generate a study name inside it: "
        f"give the study a name that starts with {project!r}"
    )


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        name=row["name"],
        scopes=tuple(row["scopes"].split(",")),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        project=row["project"],
    )


def _exists_message(name: str, revoked: bool) -> str:
    state = " (revoked; names are never reused)" if revoked else ""
    return (
        f"an API token named {name!r} already exists{state}: choose another name, "
        "or see them all with `hpsearch token list`"
    )


def create_token(
    storage: optuna.storages.RDBStorage,
    name: str,
    *,
    scopes: str | Iterable[str],
    project: str | None = None,
) -> tuple[TokenInfo, str]:
    """Create a token; returns its info and its secret, which is shown this once only.

    ``scopes`` is ``"read"`` or ``"write"`` (or an iterable of them; write implies read).
    ``project`` limits the token to the studies whose names start with it (see
    :meth:`TokenInfo.covers`); ``None`` covers every study. Raises :class:`TokenExists` when
    the name is taken (also by a revoked token) and :class:`UsageError` for an unknown scope,
    a name that is not 1-255 letters, digits, ``.``, ``_``, ``@`` or ``-``, or a project that
    could not start a study name (:func:`check_project`).
    """
    granted = _scopes(scopes)
    if project is not None:
        check_project(project)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(
            f"token name {name!r}: use 1-255 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit (e.g. ci-submit)"
        )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    table = api_tokens
    try:
        with storage.engine.begin() as conn:
            taken = conn.execute(
                sqlalchemy.select(table.c.revoked_at).where(table.c.name == name)
            ).one_or_none()
            if taken is not None:
                raise TokenExists(_exists_message(name, taken.revoked_at is not None))
            conn.execute(
                table.insert().values(
                    name=name,
                    scopes=",".join(granted),
                    token_hash=hash_secret(secret),
                    created_at=utc_now(),
                    project=project,
                )
            )
            row = conn.execute(sqlalchemy.select(table).where(table.c.name == name)).mappings()
            info = _info(row.one())
    except sqlalchemy.exc.IntegrityError as e:  # another process created the name just now
        raise TokenExists(_exists_message(name, revoked=False)) from e
    return info, secret


def list_tokens(storage: optuna.storages.RDBStorage) -> list[TokenInfo]:
    """Every token, revoked ones included, oldest first (no secrets, no hashes)."""
    query = sqlalchemy.select(api_tokens).order_by(api_tokens.c.token_id)
    with storage.engine.connect() as conn:
        return [_info(row) for row in conn.execute(query).mappings()]


def revoke_token(storage: optuna.storages.RDBStorage, name: str) -> TokenInfo:
    """Revoke a token: from the next request on, its secret no longer authenticates.

    Revoking a revoked token changes nothing. The row stays (for ``hpsearch token list``), so
    its name cannot be reused. Raises :class:`TokenNotFound` for an unknown name.
    """
    table = api_tokens
    with storage.engine.begin() as conn:
        conn.execute(
            table.update()
            .where(table.c.name == name, table.c.revoked_at.is_(None))
            .values(revoked_at=utc_now())
        )
        row = conn.execute(sqlalchemy.select(table).where(table.c.name == name)).mappings()
        found = row.one_or_none()
    if found is None:
        raise TokenNotFound(
            f"no API token named {name!r} in this study database: "
            "see the names with `hpsearch token list`"
        )
    return _info(found)


def authenticate(storage: optuna.storages.RDBStorage, secret: str) -> TokenInfo | None:
    """The token whose secret this is, or ``None`` for an unknown or revoked secret.

    Looks the token up by the hash of ``secret`` (so no comparison of secrets happens), and
    refreshes its ``last_used_at`` when that is older than a minute: most requests only read.
    """
    if not secret:
        return None
    table = api_tokens
    query = sqlalchemy.select(table, utc_now().label("db_now")).where(
        table.c.token_hash == hash_secret(secret)
    )
    with storage.engine.connect() as conn:
        row = conn.execute(query).mappings().one_or_none()
        if row is None or row["revoked_at"] is not None:
            return None
        info = _info(row)
        now = row["db_now"].replace(tzinfo=None)
        last_used = row["last_used_at"]
        if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
            cutoff = now - LAST_USED_RESOLUTION
            conn.execute(
                table.update()
                .where(
                    table.c.token_id == row["token_id"],
                    sqlalchemy.or_(table.c.last_used_at.is_(None), table.c.last_used_at <= cutoff),
                )
                .values(last_used_at=utc_now())
            )
            conn.commit()
    return info
