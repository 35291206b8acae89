"""The CLI's structure as a user meets it: one `--storage`, `serve` configures its app without
the environment, and the verbs that do not train start without torch or timm."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from starlette.testclient import TestClient

from hpsearch.cli import build_parser
from hpsearch.cli.output import Column, render_table
from hpsearch.cli.serve import serve_settings
from hpsearch.service.app import create_app


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += [sub, *_subparsers(sub)]
    return found


def test_storage_is_one_option_with_one_meaning_on_every_verb() -> None:
    helps = [
        action.help
        for sub in _subparsers(build_parser())
        for action in sub._actions
        if "--storage" in action.option_strings
    ]
    assert len(helps) >= 15  # every verb that touches a study database, token's three included
    assert len(set(helps)) == 1, set(helps)


def test_serve_hands_its_options_to_the_app_and_leaves_the_environment_alone(
    sqlite_url: str,
) -> None:
    argv = ["serve", "--storage", sqlite_url, "--allowed-host", "api.example.com"]
    args = build_parser().parse_args([*argv, "--artifacts", "off"])
    before = dict(os.environ)
    settings = serve_settings(args)
    assert dict(os.environ) == before
    assert settings.storage == sqlite_url and settings.artifacts == "off"
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz", headers={"Host": "api.example.com"}).status_code == 200
        assert client.get("/healthz", headers={"Host": "elsewhere.example"}).status_code == 400
    assert dict(os.environ) == before


_IMPORTS = """
import contextlib, io, json, sys
from hpsearch.cli import main
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
print(json.dumps([m for m in ("torch", "timm") if m in sys.modules]))
"""


def test_verbs_that_do_not_train_import_neither_torch_nor_timm(
    tmp_path: Path, sqlite_url: str
) -> None:
    url = sqlite_url
    spec = tmp_path / "s.yaml"
    spec.write_text("name: quick\nspace: demo\nbudget: {trials: 2}\n")
    verbs = [
        ["--help"],
        ["submit", str(spec), "--storage", url],
        ["status", "--storage", url],
        ["status", "quick", "--storage", url],
        ["best", "quick", "--storage", url],
        ["trials", "quick", "--storage", url],
        ["workers", "--storage", url],
        ["spaces"],
        ["spaces", "image"],
        *([verb, "--help"] for verb in ("serve", "worker", "try", "lr-find", "demo")),
    ]
    out = subprocess.run(
        [sys.executable, "-c", _IMPORTS, json.dumps(verbs)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout.splitlines()[-1]) == []


def test_a_table_pads_fixed_columns_and_fits_the_others() -> None:
    columns = [Column(title="#", align=">", width=3), Column(title="name"), Column(title="note")]
    lines = render_table(columns, [("1", "a", "x"), ("1000", "long-name", "y")])
    assert lines == [
        "  #  name       note",
        "  1  a          x",
        "1000  long-name  y",  # a fixed column overflows; the last one is not padded
    ]
