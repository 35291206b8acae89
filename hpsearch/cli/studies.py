"""The verbs that create and change studies: submit, stop, resume, extend, delete, prune,
enqueue, pruner. Each works on the study database or through a service
(:data:`~hpsearch.cli.sources.SOURCE_RULE`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hpsearch.cli import options
from hpsearch.cli.command import Command
from hpsearch.cli.sources import open_source
from hpsearch.errors import UsageError

__all__ = ["Delete", "Enqueue", "Extend", "Prune", "Pruner", "Resume", "Stop", "Submit"]


def _writer(args: argparse.Namespace, *, create: bool = False) -> Any:
    """Where a verb that changes a study works; an error names it."""
    return open_source(args, doing="writing", create=create)


def _worker_hint(name: str, task: dict[str, Any]) -> str:
    """The ``hpsearch worker`` command that serves the study, with the ``--data-root`` its
    local dataset needs (workers read bundled datasets only without one)."""
    from hpsearch.studies.checks import dataset_folder

    folder = dataset_folder(task)
    root = f" --data-root {folder}" if folder else ""
    return f"`hpsearch worker --study {name}{root}`"


class Submit(Command, name="submit", options=(options.SOURCE,)):
    """submit a study spec (YAML) to the service or the study database; prints its name

    Submit a study spec (YAML or JSON) to the service or the study database and print the
    study's name. A --storage database that does not exist yet is created.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("spec", help="study spec file (YAML or JSON)")
        parser.add_argument("--name", help="study name (overrides the file's)")
        parser.add_argument(
            "--remote-data",
            action="store_true",
            help="task.dataset exists on the workers' machines only: do not check here that "
            "the path exists and has the task.target column",
        )

    def run(self, args: argparse.Namespace) -> int:
        from hpsearch.client import read_spec_file

        spec = read_spec_file(args.spec)
        if args.name:
            spec["name"] = args.name
        space = spec.get("space")
        if isinstance(space, str) and space.endswith((".yaml", ".yml")):
            # A space file on this machine: send it inline, the service reads no client paths.
            from pathlib import Path

            from hpsearch.spaces import load_space

            path = Path(args.spec).parent / space
            spec["space"] = load_space(path).model_dump(mode="json")
        if not args.remote_data:  # a path that is not here, a column not in the file: say so now
            from hpsearch.studies.checks import check_local_task

            check_local_task(spec)
        with _writer(args, create=True) as client:
            created = client.create_study(spec)
        print(created["name"])
        if created.get("grid_points") is not None:  # on stderr: stdout is the name alone
            from hpsearch.cli.output import grid_text

            print(grid_text(created), file=sys.stderr)
        return 0


class Stop(Command, name="stop", options=(options.STUDY, options.SOURCE)):
    """stop a study: workers start no new trial of it (running ones finish)"""

    def run(self, args: argparse.Namespace) -> int:
        with _writer(args) as client:
            status = client.stop(args.name)
        running = status["counts"]["running"]
        print(f"study {args.name} stopped: no new trials; {running} running trial(s) will finish")
        return 0


class Resume(Command, name="resume", options=(options.STUDY, options.SOURCE)):
    """let a stopped study take trials again"""

    def run(self, args: argparse.Namespace) -> int:
        with _writer(args) as client:
            status = client.resume(args.name)
            if status["done_reason"]:
                print(f"study {args.name} is {status['state']}: {status['done_reason']}")
                return 0
            task = client.spec(args.name).get("task") or {}
        hint = _worker_hint(args.name, task)
        print(f"study {args.name} is {status['state']}: workers pick it up again ({hint})")
        return 0


def _total_trials(given: str, client: Any, name: str) -> int:
    """``--trials``: a total (``40``), or ``+N`` for N more than the study's budget now."""
    more = given.startswith("+")
    try:
        n = int(given[1:] if more else given)
    except ValueError:
        raise UsageError(
            f"--trials takes a number of trials (40) or +N for N more (+10), got {given!r}"
        ) from None
    if not more:
        return n
    status = client.study(name)
    return (status["budget_trials"] or status["finished"]) + n


class Extend(Command, name="extend", options=(options.STUDY, options.SOURCE)):
    """change a stopped, failed or finished study and continue it: more trials, a higher
    --max-failures, a corrected --dataset or --target

    Change a study's budget or task data, then let workers continue it (PATCH /studies/NAME). A
    failed study runs again; the change is checked like a new spec and recorded in the study's
    history (`hpsearch status NAME`). Values are totals: --trials 40 lets the study finish 40
    trials in all, counting those done; --trials +10 gives it 10 more. The space, the metric,
    the epochs and the rest cannot change: submit a new study for those (warm_start starts it
    from this one).
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--trials", metavar="N|+N", help="the trial budget: a total, or +N for N more"
        )
        parser.add_argument("--max-failures", type=int, help="failed trials tolerated (a total)")
        parser.add_argument(
            "--seconds", type=float, help="the time budget in seconds since creation"
        )
        parser.add_argument(
            "--dataset", help="task.dataset: a bundled name or a path on the workers"
        )
        parser.add_argument("--target", help="task.target: the label column ('' for the default)")
        parser.add_argument(
            "--remote-data",
            action="store_true",
            help="the study's dataset exists on the workers' machines only: do not check here "
            "that the path exists and has the task.target column",
        )

    def run(self, args: argparse.Namespace) -> int:
        from hpsearch.cli.output import change_text

        budget: dict[str, Any] = {}
        task: dict[str, Any] = {}
        if args.max_failures is not None:
            budget["max_failures"] = args.max_failures
        if args.seconds is not None:
            budget["seconds"] = args.seconds
        if args.dataset is not None:
            task["dataset"] = args.dataset
        if args.target is not None:
            task["target"] = args.target or None  # '' goes back to the default label column
        if args.trials is None and not budget and not task:
            raise UsageError(
                "give what to change: --trials, --max-failures, --seconds, --dataset or "
                f"--target (to continue a failed study unchanged: `hpsearch resume {args.name}`)"
            )
        with _writer(args) as client:
            # The task as the change leaves it: a new --target is checked against the study's
            # own dataset, as `submit` checks a new spec (unless the data is remote).
            stored = client.spec(args.name).get("task") or {}
            changed_task = {**stored, **task}
            if task and not args.remote_data:
                from hpsearch.studies.checks import check_local_task

                check_local_task({"task": changed_task})
            if args.trials is not None:
                budget["trials"] = _total_trials(args.trials, client, args.name)
            changes = {key: value for key, value in (("budget", budget), ("task", task)) if value}
            before = len(client.study(args.name).get("history") or [])
            status = client.update_study(args.name, changes)
        history = status.get("history") or []
        if len(history) > before:  # this call's change, not an earlier one
            print(f"study {args.name} changed: {change_text(history[-1])}")
        else:
            print(f"study {args.name}: nothing changed")
        if status["done_reason"]:
            print(f"it is {status['state']}: {status['done_reason']}")
        else:
            print(f"it is open: workers pick it up ({_worker_hint(args.name, changed_task)})")
        return 0


class Delete(Command, name="delete", options=(options.STUDY, options.SOURCE)):
    """delete a study and all its trials (cannot be undone)"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--force", action="store_true",
            help="delete even while trials run (their results are lost)",
        )  # fmt: skip
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def run(self, args: argparse.Namespace) -> int:
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError(f"deleting {args.name!r} cannot be undone: pass --yes to confirm")
            answer = input(f"delete study {args.name} and all its trials? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("not deleted")
                return 1
        with _writer(args) as client:
            client.delete(args.name, force=args.force)
        print(f"study {args.name} deleted")
        return 0


class Prune(Command, name="prune", options=(options.STUDY, options.SOURCE)):
    """ask the worker running a trial to prune it after its current epoch"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("number", type=int, help="trial number")

    def run(self, args: argparse.Namespace) -> int:
        with _writer(args) as client:
            client.prune(args.name, args.number)
        print(
            f"asked the worker to prune trial {args.number} of {args.name} after its current epoch"
        )
        return 0


class Enqueue(Command, name="enqueue", options=(options.STUDY, options.SOURCE)):
    """queue configs for a study's workers to run before sampling (warm start by hand)

    Read CONFIG (YAML or JSON: one {param: value} mapping or a list of them) and queue each
    config as a trial the study's workers run before sampling new ones. Every config is checked
    against the study's space first; one bad config queues none.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "configs", metavar="CONFIG.yaml", help="a mapping or a list of mappings"
        )

    def run(self, args: argparse.Namespace) -> int:
        import yaml

        from hpsearch.yaml_input import load_user_yaml, read_user_yaml_file, yaml_error_line

        try:
            configs = load_user_yaml(read_user_yaml_file(args.configs))
        except OSError as e:
            raise UsageError(f"cannot read {args.configs!r}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise UsageError(yaml_error_line(e, args.configs)) from e
        if isinstance(configs, dict):
            configs = [configs]
        if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
            raise UsageError(
                f"{args.configs}: give a mapping {{param: value}} or a list of such mappings"
            )
        with _writer(args) as client:
            result = client.enqueue(args.name, configs)
        print(f"enqueued {result['enqueued']} of {result['given']} config(s) for {args.name}")
        return 0


class Pruner(Command, name="pruner", options=(options.STUDY, options.SOURCE)):
    """change a study's pruner; workers use it for their next trials

    Replace the pruner stored with the study, e.g. `hpsearch pruner NAME asha --arg
    reduction_factor=2` or `hpsearch pruner NAME patient --arg patience=2 --arg wraps=median`.
    The pruner is built first: a bad name or argument changes nothing.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "pruner", help="none, median, percentile, asha, hyperband, wilcoxon, patient"
        )
        parser.add_argument(
            "--arg", action="append", default=[], metavar="KEY=VALUE",
            help="a keyword argument of the pruner (values read as YAML scalars)",
        )  # fmt: skip

    def run(self, args: argparse.Namespace) -> int:
        import yaml

        from hpsearch.yaml_input import load_user_yaml, yaml_error_line

        pruner_args: dict[str, Any] = {}
        for item in args.arg:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--arg must look like KEY=VALUE, got {item!r}")
            try:
                pruner_args[key] = load_user_yaml(value)
            except yaml.YAMLError as e:
                raise UsageError(yaml_error_line(e, f"--arg {key}")) from e
        with _writer(args) as client:
            spec = client.set_pruner(args.name, args.pruner, pruner_args)
        print(f"study {args.name} now prunes with {json.dumps(spec['pruner'])}")
        return 0
