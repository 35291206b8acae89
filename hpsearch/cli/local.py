"""The verbs that work on this machine, before or without a study of yours: ``spaces`` shows
the search spaces, ``try`` and ``lr-find`` train a space's configs here, ``demo`` runs a whole
search. The trainer (torch, timm) is imported only inside ``try``, ``lr-find`` and ``demo``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hpsearch.cli import options
from hpsearch.cli.command import Command
from hpsearch.cli.output import Column, render_table
from hpsearch.errors import UsageError

__all__ = ["Demo", "LrFind", "Spaces", "Try"]


class Spaces(Command, name="spaces"):
    """list the bundled search spaces, or show one with its tiers"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name", nargs="?", help="space name or YAML path")
        parser.add_argument("--json", action="store_true", help="print the space as JSON")

    def run(self, args: argparse.Namespace) -> int:
        from hpsearch.spaces import list_spaces, load_space

        if not args.name:
            loaded = [(name, load_space(name)) for name in list_spaces()]
            columns = [
                Column(width=10),
                Column(width=24, gap=" "),
                Column(width=0, gap=" "),
                Column(),
            ]
            rows = [
                (name, s.task, f"{len(s.params):>3} parameters", s.description)
                for name, s in loaded
            ]
            print("\n".join(render_table(columns, rows)))
            return 0
        space = load_space(args.name)
        if args.json:
            print(json.dumps(space.model_dump(mode="json"), indent=2))
            return 0
        print(f"{space.name} ({space.task}): {space.description}")
        rows = []
        for tier in ("high", "medium", "low"):
            for name in space.ordered_names():
                p = space.params[name]
                if p.impact != tier:
                    continue
                if p.type == "categorical":
                    domain = "|".join(str(c) for c in p.choices or [])
                else:
                    domain = f"{p.low}..{p.high}" + (" log" if p.log else "")
                when = (
                    ""
                    if not p.when
                    else "  when " + ", ".join(f"{k} in {v}" for k, v in p.when.items())
                )
                rows.append((tier, name, domain, f"default {p.default}{when}"))
        columns = [
            Column(width=6),
            Column(width=24, gap=" "),
            Column(width=40, gap=" "),
            Column(gap=" "),
        ]
        if rows:
            print("\n".join(render_table(columns, rows, indent="  ")))
        return 0


def _training_input(args: argparse.Namespace, **task_options: Any) -> tuple[Any, Any, Any]:
    """``(space, fixed, task)`` of the :data:`~hpsearch.cli.options.TRAINING_INPUT` options:
    the space, its ``--set`` values checked against it, and the task to train on."""
    from hpsearch.cli.tryout import check_assignments, make_task, parse_assignments
    from hpsearch.spaces import load_space

    space = load_space(args.space)
    fixed = check_assignments(space, parse_assignments(args.set))
    task = make_task(space, dataset=args.dataset, target=args.target, **task_options)
    return space, fixed, task


class Try(Command, name="try", options=(options.TRAINING_INPUT,)):
    """train one config (or N random ones) of a space outside any study, epoch by epoch

    Check that a space and your data train before launching a study. Without --random, trains
    the space's defaults with the --set values; with --random N, trains N configs drawn at
    random from the space (the --set values pinned). Prints one line per epoch (config, epoch,
    train loss, the metric, val_loss, lr) and a summary (final metric, seconds, and why a config
    failed). Nothing is stored. Exits 1 if any config failed (a diverging loss, a value the
    trainer refuses); the others still run.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from hpsearch.families import METRICS

        parser.add_argument(
            "--random", type=int, default=0, metavar="N",
            help="train N random configs from the space instead of its defaults",
        )  # fmt: skip
        parser.add_argument("--epochs", type=int, default=3, help="epochs per config (default 3)")
        parser.add_argument(
            "--pretrained-weights",
            help="weights file for transfer learning (image spaces with transfer.pretrained=true)",
        )
        parser.add_argument(
            "--metric",
            choices=sorted(METRICS),
            help="the metric of the summary (default: the family's, val_accuracy or val_rmse)",
        )

    def run(self, args: argparse.Namespace) -> int:
        from hpsearch.cli.tryout import (
            configs_to_try,
            describe_target,
            device_defaults,
            epoch_header,
            format_config_line,
            format_epoch,
            format_summary,
            pin_pretrained,
            trainer_for,
            try_configs,
        )
        from hpsearch.families import FAMILY_METRICS, default_metric

        space, fixed, task = _training_input(
            args, epochs=args.epochs, pretrained_weights=args.pretrained_weights
        )
        # As `submit` would refuse it: a searched transfer.pretrained needs weights.
        fixed, pinned_note = pin_pretrained(space, fixed, args.pretrained_weights)
        trainer_for(task.family)  # a family without a trainer fails before anything is printed
        defaults, device_note = (
            ({}, None) if args.random else device_defaults(space, fixed, args.device)
        )
        for line in [pinned_note, device_note, *describe_target(task)]:
            if line:
                print(line, file=sys.stderr, flush=True)
        metric = args.metric or default_metric(task.family)
        if metric not in FAMILY_METRICS.get(task.family, (metric,)):
            raise UsageError(
                f"--metric {metric}: {task.family} reports {', '.join(FAMILY_METRICS[task.family])}"
            )
        configs = configs_to_try(
            space, fixed=fixed, n_random=args.random, seed=args.seed, defaults=defaults
        )
        print(
            f"trying {len(configs)} config(s) of space {space.name!r} on {task.dataset}, "
            f"{task.epochs} epoch(s) each",
            flush=True,
        )

        def on_start(number: int, config: dict[str, Any]) -> None:
            print(format_config_line(number, config), flush=True)
            print(epoch_header(metric), flush=True)

        def on_epoch(number: int, result: Any) -> None:
            print(format_epoch(number, result, metric), flush=True)

        results = try_configs(
            configs, task, metric=metric, seed=args.seed, device=args.device,
            on_start=on_start, on_epoch=on_epoch,
        )  # fmt: skip
        print("\nsummary:")
        print("\n".join(format_summary(results)))
        failed = [r.number for r in results if r.failed]
        if failed:
            print(
                f"hpsearch try: {len(failed)} of {len(results)} config(s) failed: "
                f"{', '.join(map(str, failed))}",
                file=sys.stderr,
            )
        return 1 if failed else 0


class LrFind(Command, name="lr-find", options=(options.TRAINING_INPUT,)):
    """LR range test: loss vs learning rate, and a suggested optim.lr range

    The learning-rate range test (Leslie Smith; fastai's lr_find) on the space's default config
    (plus --set values): the LR grows exponentially every batch from --min-lr to --max-lr while
    the training loss is recorded and smoothed; the test stops when the smoothed loss exceeds 4x
    its best. Prints LR vs loss and a suggested range for a study's optim.lr bounds: high = the
    LR at the minimum smoothed loss, low = min(LR of steepest descent, high / 10) / 10. optim.lr
    and sched.name of the config are ignored. Tabular spaces only for now.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--min-lr", type=float, default=1e-7, help="first LR (default 1e-7)")
        parser.add_argument("--max-lr", type=float, default=10.0, help="last LR (default 10)")
        parser.add_argument(
            "--steps", type=int, default=100, help="optimizer steps at most (default 100)"
        )
        parser.add_argument(
            "--plot", metavar="FILE.png",
            help="also draw loss vs LR into this image (needs matplotlib)",
        )  # fmt: skip
        parser.add_argument(
            "--write-space",
            metavar="FILE.yaml",
            help="write the space with optim.lr narrowed to the suggested range, for a study spec",
        )

    def run(self, args: argparse.Namespace) -> int:
        from hpsearch.cli.tryout import describe_target

        space, fixed, task = _training_input(args)
        for line in describe_target(task):
            print(line, file=sys.stderr, flush=True)
        from hpsearch.train.lr_finder import format_curve, lr_range_test, save_plot

        test = lr_range_test(
            space, task, fixed=fixed, min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps,
            seed=args.seed, device=args.device,
        )  # fmt: skip
        stop = (
            f"stopped at step {len(test.lrs)}: {test.stop_reason}"
            if test.stopped_early
            else "ran every step"
        )
        print(
            f"LR range test of space {space.name!r} on {task.dataset}: {test.steps} steps from "
            f"{test.min_lr:.1e} to {test.max_lr:.1e}, {stop}"
        )
        print("\n".join(format_curve(test)))
        low, high = test.suggested_range()
        print(
            f"steepest descent at lr {test.steepest_lr:.2e}; minimum smoothed loss "
            f"{min(test.smoothed):.4f} at lr {test.min_loss_lr:.2e}"
        )
        print(f"suggested optim.lr range: {low:.2e} .. {high:.2e}")
        print(
            "  rule: high = LR at the minimum smoothed loss; "
            "low = min(steepest-descent LR, high / 10) / 10"
        )
        print(
            f"  one LR without searching (fastai's picks): {test.steepest_lr:.2e} (steepest) or "
            f"{test.min_loss_lr / 10:.2e} (minimum / 10)"
        )
        if args.plot:
            save_plot(test, args.plot, title=f"LR range test: {space.name} on {task.dataset}")
            print(f"plot: {args.plot}")
        if args.write_space:
            import yaml

            from hpsearch.train.lr_finder import narrow_lr

            narrowed = narrow_lr(space, low, high).model_dump(mode="json", exclude_none=True)
            with open(args.write_space, "w") as f:
                yaml.safe_dump(narrowed, f, sort_keys=False)
            print(f"space with these bounds: {args.write_space} (use `space: {args.write_space}`)")
        return 0


class Demo(Command, name="demo", options=(options.STORAGE,)):
    """run a whole search on bundled data: service, dashboard, two workers, best config

    Start the REST service and the dashboard on a SQLite file, submit the demo study (a small
    network on scikit-learn's digits), run it with local workers while showing progress, then
    print the best config and the URLs. Keeps serving until Ctrl-C or SIGTERM, either of which
    stops everything it started and revokes its API token. When its ports are taken it uses free
    ones and prints the `export HPSEARCH_SERVER=...` line that points another shell at it.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--port", type=int, default=8000,
            help="API port (default 8000; another free one if taken)",
        )  # fmt: skip
        parser.add_argument(
            "--dashboard-port", type=int, default=8080, help="dashboard port (default 8080)"
        )
        parser.add_argument(
            "--workers", type=int, default=2, help="local worker processes (default 2)"
        )
        parser.add_argument("--trials", type=int, default=40, help="trial budget (default 40)")
        parser.add_argument("--epochs", type=int, default=15, help="epochs per trial (default 15)")
        parser.add_argument(
            "--exit-when-done", action="store_true", help="stop the service when the study is done"
        )

    def run(self, args: argparse.Namespace) -> int:
        from hpsearch.cli.demo import run_demo

        return run_demo(
            storage=args.storage, port=args.port, dashboard_port=args.dashboard_port,
            workers=args.workers, trials=args.trials, epochs=args.epochs,
            keep_serving=not args.exit_when_done,
        )  # fmt: skip
