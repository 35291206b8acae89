"""``hpsearch token create|list|revoke``: the service's API tokens, in the study database."""

from __future__ import annotations

import argparse
from typing import Any

from hpsearch.cli import options
from hpsearch.cli.command import Command
from hpsearch.cli.output import Column, render_table
from hpsearch.cli.sources import database_source

__all__ = ["Token"]


def _when(moment: Any) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


class Token(Command, name="token"):
    """create, list or revoke the service's API tokens (in the study database)

    API tokens of the REST service live in the study database, hashed: whoever holds the
    database URL manages them here, no service needed. Scope read allows the GET routes, write
    (implies read) also allows every change: submitting, pruning, stopping or deleting studies.
    --project PREFIX limits a token to the studies whose names start with PREFIX (one team's
    studies); a token without a project covers every study, so an unlimited write token is an
    admin token: give teams project tokens. Clients send a token as 'Authorization: Bearer
    <secret>'; the hpsearch CLI and client send $HPSEARCH_API_TOKEN.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="token_verb", required=True, metavar="ACTION")
        storage = [options.STORAGE]
        create = actions.add_parser(
            "create",
            help="create a token and print its secret (shown only this once)",
            parents=storage,
        )
        create.add_argument("name", help="a name to know it by, e.g. ci-submit (never reused)")
        create.add_argument(
            "--scope", choices=["read", "write"], default="read",
            help="read (default): the GET routes; write: also every change (submit, prune, ...)",
        )  # fmt: skip
        create.add_argument(
            "--project", metavar="PREFIX",
            help="limit the token to the studies whose names start with PREFIX, e.g. team-a "
            "(reads, writes and listings; study names it creates get the prefix); default: "
            "every study",
        )  # fmt: skip
        actions.add_parser(
            "list",
            help="list tokens: name, scopes, project, created, last used, revoked",
            parents=storage,
        )
        revoke = actions.add_parser(
            "revoke", help="revoke a token: its secret stops working at once", parents=storage
        )
        revoke.add_argument("name", help="the token's name (see `hpsearch token list`)")

    def run(self, args: argparse.Namespace) -> int:
        from hpsearch.db import tokens
        from hpsearch.db.storage import open_storage, redact

        if args.token_verb == "create" and args.project is not None:
            tokens.check_project(args.project)  # before the database is opened (or created)
        url = database_source(args.storage).url
        storage = open_storage(url, create=args.token_verb == "create")  # list, revoke: never
        if args.token_verb == "create":
            info, secret = tokens.create_token(
                storage, args.name, scopes=args.scope, project=args.project
            )
            limit = (
                f"project {info.project!r}: studies named {info.project}*"
                if info.project is not None
                else "every study"
            )
            print(
                f"created API token {info.name!r} (scope {','.join(info.scopes)}, {limit}) "
                f"in {redact(url)}"
            )
            print("its secret, shown only this once:")
            print(secret)
            print(f"use it with: export HPSEARCH_API_TOKEN={secret}")
            return 0
        if args.token_verb == "revoke":
            info = tokens.revoke_token(storage, args.name)
            since = _when(info.revoked_at)
            print(f"API token {info.name!r} is revoked (since {since}): its secret now gets 401")
            return 0
        found = tokens.list_tokens(storage)
        if not found:
            print("no API tokens yet: create one with `hpsearch token create NAME --scope write`")
            return 0
        columns = [
            Column(title="name"),
            Column(title="scopes", width=10),
            Column(title="project"),
            Column(title="created", width=16),
            Column(title="last used", width=16),
            Column(title="revoked"),
        ]
        rows = [
            (
                t.name,
                ",".join(t.scopes),
                t.project or "(all)",  # no project: every study
                _when(t.created_at),
                _when(t.last_used_at),
                _when(t.revoked_at),
            )
            for t in found
        ]
        print("\n".join(render_table(columns, rows)))
        return 0
