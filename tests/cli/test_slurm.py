"""`hpsearch slurm`: the sbatch array job it writes is valid bash, runs the CLI's real commands,
holds no secret, and fans out one worker command per node (run with Slurm faked: no Slurm here).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from hpsearch.cli import build_parser, main

SECRET_URL = "postgresql://hp:s3cret-pw@db.cluster:5432/hpsearch"
SECRET_TOKEN = "hps_write_T0ken-never-in-scripts"

OPTION_SETS = [
    [],
    ["--array", "0-7%2", "--nodes", "3", "--gpus-per-node", "4", "--per-gpu", "2",
     "--study", "my study's name", "--time", "1-00:00:00", "--partition", "gpu",
     "--account", "proj-42", "--cpus-per-task", "32", "--mem", "128G", "--gpu-type", "a100",
     "--sbatch=--qos=high", "--setup", "module load cuda/12", "--wait"],
    ["--env-file", "/home/me/hpsearch env", "--output", "logs/w-%A_%a.out", "--",
     "--data-root", "/scratch/data", "--objective", "mypkg.train:fit", "--max-trials", "50"],
]  # fmt: skip

# Stand-ins for Slurm's srun (one copy of its command per node, as on SLURM_JOB_NUM_NODES
# nodes) and for hpsearch (records what it was started with, where).
SRUN = """#!/bin/bash
printf '%s\\n' "$@" > "$TRACE/srun.args"
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
for ((node = 0; node < SLURM_JOB_NUM_NODES; node++)); do
  SLURM_NODEID=$node SLURM_PROCID=$node CUDA_VISIBLE_DEVICES=0,1,2,3 "$@" &
done
wait
"""
HPSEARCH = """#!/bin/bash
printf '%s\\n' "$@" > "$TRACE/argv.$SLURM_NODEID"
printf '%s' "$HPSEARCH_STORAGE" > "$TRACE/storage.$SLURM_NODEID"
"""


def _write(tmp_path: Path, options: list[str], monkeypatch, capsys) -> str:
    """The script for ``options``, written while the secrets are in the environment."""
    monkeypatch.setenv("HPSEARCH_STORAGE", SECRET_URL)
    monkeypatch.setenv("HPSEARCH_API_TOKEN", SECRET_TOKEN)
    out = tmp_path / "job.sbatch"
    assert main(["slurm", "--out", str(out), *options]) == 0
    assert f"sbatch {out}" in capsys.readouterr().out
    assert os.access(out, os.X_OK)
    return out.read_text()


def _worker_lines(script: str) -> list[list[str]]:
    """Every hpsearch command in the script, as argv after `hpsearch`."""
    found = []
    for line in script.splitlines():
        if line.lstrip().startswith("#") or "hpsearch " not in line:
            continue
        words = shlex.split(line)
        if "hpsearch" in words:
            found.append(words[words.index("hpsearch") + 1 :])
    return found


@pytest.mark.parametrize("options", OPTION_SETS, ids=["defaults", "every-sbatch-option", "extra"])
def test_the_script_is_bash_runs_real_commands_and_holds_no_secret(
    options, tmp_path, monkeypatch, capsys
):
    script = _write(tmp_path, options, monkeypatch, capsys)
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert SECRET_URL not in script and "s3cret" not in script and SECRET_TOKEN not in script

    # sbatch reads #SBATCH lines only before the first command.
    lines = script.splitlines()
    first_command = next(i for i, ln in enumerate(lines[1:], 1) if ln and ln[0] != "#")
    directives = [ln.removeprefix("#SBATCH ") for ln in lines if ln.startswith("#SBATCH ")]
    assert not any(line.startswith("#SBATCH") for line in lines[first_command:])
    given = dict(zip(options[::2], options[1::2]))
    assert f"--array={given.get('--array', '0')}" in directives
    assert f"--nodes={given.get('--nodes', '1')}" in directives
    gres = f"gpu:{given['--gpu-type']}:" if "--gpu-type" in given else "gpu:"
    assert f"--gres={gres}{given.get('--gpus-per-node', '1')}" in directives
    for option in ("--time", "--partition", "--account", "--mem", "--cpus-per-task", "--output"):
        if option in given:
            assert f"{option}={given[option]}" in directives
    if "--sbatch=--qos=high" in options:
        assert "--qos=high" in directives

    # Every hpsearch command in it is a real verb with real flags.
    (argv,) = _worker_lines(script)
    args = build_parser().parse_args(argv)
    assert (args.verb, args.gpus, args.storage) == ("worker", "all", None)
    assert args.per_gpu == int(given.get("--per-gpu", 1))
    assert args.study == given.get("--study")
    assert args.wait == ("--wait" in options)
    if "--data-root" in options:
        assert (args.data_root, args.objective, args.max_trials) == (
            ["/scratch/data"],
            "mypkg.train:fit",
            50,
        )


def _fake_slurm(tmp_path: Path) -> tuple[dict[str, str], Path]:
    stubs, trace = tmp_path / "bin", tmp_path / "trace"
    stubs.mkdir()
    trace.mkdir()
    for name, text in (("srun", SRUN), ("hpsearch", HPSEARCH)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPSEARCH_", "SLURM_"))}
    env.update(PATH=f"{stubs}{os.pathsep}{env['PATH']}", TRACE=str(trace))
    env.update(SLURM_JOB_NUM_NODES="3", SLURM_CPUS_PER_TASK="16", SLURM_ARRAY_TASK_COUNT="8")
    return env, trace


def test_the_job_starts_one_worker_command_per_node_with_the_url_from_the_environment(
    tmp_path, monkeypatch, capsys
):
    options = ["--array", "0-7", "--nodes", "3", "--gpus-per-node", "4", "--per-gpu", "2",
               "--study", "big one"]  # fmt: skip
    script = tmp_path / "job.sbatch"
    script.write_text(_write(tmp_path, options, monkeypatch, capsys))
    env, trace = _fake_slurm(tmp_path)

    ran = subprocess.run(["bash", str(script)], env={**env, "HPSEARCH_STORAGE": SECRET_URL},
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    srun = (trace / "srun.args").read_text().splitlines()
    assert {"--nodes=3", "--ntasks-per-node=1", "--cpus-per-task=16"} <= set(srun)
    for node in range(3):  # one `hpsearch worker --gpus all --per-gpu 2` on each node
        args = build_parser().parse_args((trace / f"argv.{node}").read_text().splitlines())
        assert (args.verb, args.gpus, args.per_gpu, args.study) == ("worker", "all", 2, "big one")
        assert (trace / f"storage.{node}").read_text() == SECRET_URL
    assert not (trace / "argv.3").exists()


def test_the_job_stops_with_one_line_when_the_database_url_is_missing_or_sqlite(
    tmp_path, monkeypatch, capsys
):
    script = tmp_path / "job.sbatch"
    script.write_text(_write(tmp_path, ["--nodes", "3"], monkeypatch, capsys))
    env, trace = _fake_slurm(tmp_path)
    for storage, said in (
        (None, "HPSEARCH_STORAGE is not set: export the study database URL before sbatch"),
        ("sqlite:///shared/hp.db", "is a SQLite file; workers on several nodes need PostgreSQL"),
    ):
        job_env = env if storage is None else {**env, "HPSEARCH_STORAGE": storage}
        ran = subprocess.run(
            ["bash", str(script)], env=job_env, capture_output=True, text=True, timeout=30
        )
        assert ran.returncode == 1 and said in ran.stderr
        assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
        assert not list(trace.iterdir())  # no worker started


def test_the_env_file_gives_the_url_at_job_time_and_only_its_path_is_written(
    tmp_path, monkeypatch, capsys
):
    env_file = tmp_path / "hpsearch.env"
    env_file.write_text(f"HPSEARCH_STORAGE='{SECRET_URL}'\n")
    script = tmp_path / "job.sbatch"
    text = _write(tmp_path, ["--env-file", str(env_file)], monkeypatch, capsys)
    assert str(env_file) in text and SECRET_URL not in text
    script.write_text(text)
    env, trace = _fake_slurm(tmp_path)
    env["SLURM_JOB_NUM_NODES"] = "1"
    ran = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0, ran.stderr
    assert (trace / "storage.0").read_text() == SECRET_URL


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--array", "0-x"], "--array '0-x' is not what sbatch takes; e.g. --array 0-7%2"),
        (["--time", "4h"], "--time '4h' is not what sbatch takes"),
        (["--nodes", "0"], "--nodes takes a number of at least 1; got 0"),
        (["--per-gpu", "0"], "--per-gpu takes a number from 1 to 64; got 0"),
        (["--setup", "a\nb"], "--setup takes one non-empty line"),
        (["--", "--storage", SECRET_URL], "the script must not hold the database URL"),
        (["--", "--gpus", "0"], "the job runs `--gpus all`"),
        (["--", "--bogus"], "refused them: unrecognized arguments: --bogus"),
    ],
)
def test_bad_options_get_one_line(options, said, tmp_path, capsys):
    out = tmp_path / "job.sbatch"
    assert main(["slurm", "--out", str(out), *options]) == 1
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1, err
    assert "s3cret" not in err  # a URL given by mistake is not echoed
    assert not out.exists()
