"""The README's promises: its example spec is valid, its commands are the real ones."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from hpsearch import studies
from hpsearch.cli import build_parser

README = (Path(__file__).parents[2] / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_the_example_study_spec_is_accepted():
    (spec_block,) = [b for b in _blocks("yaml") if "name: digits-mlp" in b]
    spec = studies.resolve_spec(yaml.safe_load(spec_block))
    assert spec.name == "digits-mlp" and spec.fixed == {"optim.name": "adamw"}


def test_the_two_setup_commands_are_there():
    commands = [line for block in _blocks("bash") for line in block.splitlines()]
    assert any(c.endswith("hpsearch demo") and "pip install" in c for c in commands)
    assert "bash .ci/run" in commands
    assert (Path(__file__).parents[2] / ".ci" / "run").exists()


def test_every_hpsearch_command_in_the_readme_parses():
    parser = build_parser()
    for block in _blocks("bash"):
        for line in block.splitlines():
            command = line.split("#")[0].strip()
            if not command.startswith("hpsearch "):
                continue
            argv = command.split()[1:]
            argv = [a if a not in ("NAME", "[NAME]") else "x" for a in argv]
            argv = [a for a in argv if not a.startswith("[")]
            parser.parse_args(argv)
