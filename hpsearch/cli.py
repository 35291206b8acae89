"""The ``hpsearch`` command: one verb per job, ``--help`` on each."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from hpsearch import __version__
from hpsearch.display import format_config, print_rows, status_rows
from hpsearch.errors import HpsearchError, UsageError
from hpsearch.tasks import FAMILY_METRICS, METRICS, default_metric

__all__ = ["main", "build_parser"]

_STORAGE_HELP = "study database URL (default: $HPSEARCH_STORAGE, else sqlite:///hpsearch.db)"
_SERVER_HELP = "hpsearch service URL (default: $HPSEARCH_SERVER, else http://127.0.0.1:8000)"


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hpsearch.storage import open_storage, redact, resolve_storage_url

    url = resolve_storage_url(args.storage)
    os.environ["HPSEARCH_STORAGE"] = (
        url  # the app's settings read it (service imports hpsearch, not back)
    )
    if not args.no_dashboard:
        from hpsearch.dashboard import start_dashboard

        open_storage(url)  # create the tables before two servers race to
        dashboard = start_dashboard(url, host=args.host, port=args.dashboard_port)
        print(f"dashboard: {dashboard.url}", flush=True)
    shown = "127.0.0.1" if args.host == "0.0.0.0" else args.host
    print(f"API: http://{shown}:{args.port} (docs at /docs) over {redact(url)}", flush=True)
    uvicorn.run(
        "service.app:create_app", factory=True, host=args.host, port=args.port, log_level="warning"
    )
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    import threading

    from hpsearch.dashboard import start_dashboard

    dashboard = start_dashboard(args.storage, host=args.host, port=args.port)
    print(f"dashboard: {dashboard.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        dashboard.stop()
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from hpsearch.worker.gpus import run_workers

    return run_workers(
        args.storage,
        gpus=args.gpus,
        study=args.study,
        objective=args.objective,
        wait=args.wait,
        threads=args.threads,
        max_trials=args.max_trials,
    )


def _cmd_submit(args: argparse.Namespace) -> int:
    from hpsearch.client import Client, read_spec_file

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
    with Client(args.server) as client:
        created = client.create_study(spec)
    print(created["name"])
    return 0


def _reader(args: argparse.Namespace) -> Any:
    """A client of the service, or with --storage a direct reader of the database."""
    if args.storage:
        from hpsearch import studies
        from hpsearch.storage import open_storage

        storage = open_storage(args.storage)

        class _Direct:
            def list_studies(self) -> dict[str, Any]:
                data = [s.model_dump(mode="json") for s in studies.list_studies(storage)]
                return {"data": data, "count": len(data)}

            def study(self, name: str) -> dict[str, Any]:
                return studies.study_status(storage, name).model_dump(mode="json")

            def best(self, name: str) -> dict[str, Any]:
                return studies.best_trial(storage, name).model_dump(mode="json")

        return _Direct()
    from hpsearch.client import Client

    return Client(args.server)


def _cmd_status(args: argparse.Namespace) -> int:
    reader = _reader(args)
    if args.name:
        status = reader.study(args.name)
        if args.json:
            print(json.dumps(status, indent=2))
        else:
            print_rows(status_rows(status))
        return 0
    listing = reader.list_studies()
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    if not listing["data"]:
        print("no studies yet: submit one with `hpsearch submit STUDY.yaml`")
        return 0
    print(f"{'study':<36} {'finished':>10} {'running':>8} {'best':>10}  state")
    for s in listing["data"]:
        budget = f"/{s['budget_trials']}" if s["budget_trials"] else ""
        best = "-" if s["best_value"] is None else f"{s['best_value']:.4f}"
        state = "done" if s["done"] else "open"
        print(
            f"{s['name']:<36} {str(s['finished']) + budget:>10} "
            f"{s['counts']['running']:>8} {best:>10}  {state}"
        )
    return 0


def _cmd_best(args: argparse.Namespace) -> int:
    best = _reader(args).best(args.name)
    if args.json:
        print(json.dumps(best, indent=2))
        return 0
    print(f"best trial of {args.name}: #{best['number']}  value {best['value']:.4f}")
    print("\n".join(format_config(best["config"])))
    return 0


def _cmd_spaces(args: argparse.Namespace) -> int:
    from hpsearch.spaces import list_spaces, load_space

    if not args.name:
        for name in list_spaces():
            space = load_space(name)
            print(
                f"{name:<10} {space.task:<24} {len(space.params):>3} parameters  "
                f"{space.description}"
            )
        return 0
    space = load_space(args.name)
    if args.json:
        print(json.dumps(space.model_dump(mode="json"), indent=2))
        return 0
    print(f"{space.name} ({space.task}): {space.description}")
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
            print(f"  {tier:<6} {name:<24} {domain:<40} default {p.default}{when}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from hpsearch.demo import run_demo

    return run_demo(
        storage=args.storage,
        port=args.port,
        dashboard_port=args.dashboard_port,
        workers=args.workers,
        trials=args.trials,
        epochs=args.epochs,
        keep_serving=not args.exit_when_done,
    )


def _cmd_try(args: argparse.Namespace) -> int:
    from hpsearch.spaces import load_space
    from hpsearch.tryout import (
        check_assignments,
        configs_to_try,
        epoch_header,
        format_config_line,
        format_epoch,
        format_summary,
        make_task,
        parse_assignments,
        trainer_for,
        try_configs,
    )

    space = load_space(args.space)
    fixed = check_assignments(space, parse_assignments(args.set))
    task = make_task(
        space,
        dataset=args.dataset,
        epochs=args.epochs,
        pretrained_weights=args.pretrained_weights,
    )
    trainer_for(task.family)  # a family without a trainer fails before anything is printed
    metric = args.metric or default_metric(task.family)
    if metric not in FAMILY_METRICS.get(task.family, (metric,)):
        raise UsageError(
            f"--metric {metric}: {task.family} reports {', '.join(FAMILY_METRICS[task.family])}"
        )
    configs = configs_to_try(space, fixed=fixed, n_random=args.random, seed=args.seed)
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


def _cmd_lr_find(args: argparse.Namespace) -> int:
    from hpsearch.spaces import load_space
    from hpsearch.tryout import check_assignments, make_task, parse_assignments

    space = load_space(args.space)
    fixed = check_assignments(space, parse_assignments(args.set))
    task = make_task(space, dataset=args.dataset)
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(
        prog="hpsearch",
        description=(
            "Hyperparameter search for neural-network training. Search spaces come from a "
            "training checklist, weighted by impact; workers on any number of machines pull "
            "trials from one shared study database. Start with `hpsearch demo`."
        ),
    )
    parser.add_argument("--version", action="version", version=f"hpsearch {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser(
        "demo",
        help="run a whole search on bundled data: service, dashboard, two workers, best config",
        description=(
            "Start the REST service and the dashboard on a SQLite file, submit the demo study "
            "(a small network on scikit-learn's digits), run it with local workers while showing "
            "progress, then print the best config and the URLs. Keeps serving until Ctrl-C."
        ),
    )
    p.add_argument("--storage", help=_STORAGE_HELP)
    p.add_argument(
        "--port", type=int, default=8000, help="API port (default 8000; another free one if taken)"
    )
    p.add_argument("--dashboard-port", type=int, default=8080, help="dashboard port (default 8080)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    p.add_argument("--trials", type=int, default=40, help="trial budget (default 40)")
    p.add_argument("--epochs", type=int, default=15, help="epochs per trial (default 15)")
    p.add_argument(
        "--exit-when-done", action="store_true", help="stop the service when the study is done"
    )
    p.set_defaults(func=_cmd_demo)

    p = verbs.add_parser(
        "serve",
        help="run the REST service (and the dashboard on its own port)",
        description=(
            "Serve the REST API (OpenAPI docs at /docs) and optuna-dashboard over the study "
            "database."
        ),
    )
    p.add_argument("--storage", help=_STORAGE_HELP)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)",
    )
    p.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    p.add_argument("--dashboard-port", type=int, default=8080, help="dashboard port (default 8080)")
    p.add_argument("--no-dashboard", action="store_true", help="serve the API only")
    p.set_defaults(func=_cmd_serve)

    p = verbs.add_parser("dashboard", help="run optuna-dashboard over the study database")
    p.add_argument("--storage", help=_STORAGE_HELP)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.set_defaults(func=_cmd_dashboard)

    p = verbs.add_parser(
        "worker",
        help="pull trials from the study database and run them until no budget is left",
        description=(
            "Run trials of hpsearch studies from the shared study database. Needs only the "
            "database URL, never the service. Without --study, serves every open study."
        ),
    )
    p.add_argument("--storage", help=_STORAGE_HELP)
    p.add_argument(
        "--study", help="serve only this study (default: every open study, neediest first)"
    )
    p.add_argument(
        "--gpus",
        default="auto",
        help="auto (every GPU if there are any, else CPU), all, none (CPU), or indices like 0,1: "
        "one worker process per GPU, each seeing only its own",
    )
    p.add_argument(
        "--objective",
        help="your own training function, package.module:function(config, report) -> metric",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="when no study has budget left, wait for new ones instead of exiting",
    )
    p.add_argument(
        "--threads", type=int, help="torch CPU threads per worker (default: torch's choice)"
    )
    p.add_argument("--max-trials", type=int, help="exit after running this many trials")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    p.set_defaults(func=_cmd_worker)

    p = verbs.add_parser(
        "submit", help="submit a study spec (YAML) to the service; prints the study's name"
    )
    p.add_argument("spec", help="study spec file (YAML or JSON)")
    p.add_argument("--name", help="study name (overrides the file's)")
    p.add_argument("--server", help=_SERVER_HELP)
    p.set_defaults(func=_cmd_submit)

    p = verbs.add_parser("status", help="list studies, or show one study's progress")
    p.add_argument("name", nargs="?", help="study name (default: list every study)")
    p.add_argument("--server", help=_SERVER_HELP)
    p.add_argument(
        "--storage", help="read this study database directly instead of asking a service"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_status)

    p = verbs.add_parser("best", help="print a study's best trial and its full config")
    p.add_argument("name", help="study name")
    p.add_argument("--server", help=_SERVER_HELP)
    p.add_argument(
        "--storage", help="read this study database directly instead of asking a service"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_best)

    p = verbs.add_parser(
        "spaces", help="list the bundled search spaces, or show one with its tiers"
    )
    p.add_argument("name", nargs="?", help="space name or YAML path")
    p.add_argument("--json", action="store_true", help="print the space as JSON")
    p.set_defaults(func=_cmd_spaces)

    p = verbs.add_parser(
        "try",
        help="train one config (or N random ones) of a space outside any study, epoch by epoch",
        description=(
            "Check that a space and your data train before launching a study. Without --random, "
            "trains the space's defaults with the --set values; with --random N, trains N "
            "configs drawn at random from the space (the --set values pinned). Prints one line "
            "per epoch (config, epoch, train loss, the metric, val_loss, lr) and a summary "
            "(final metric, seconds, and why a config failed). Nothing is stored. Exits 1 if "
            "any config failed (a diverging loss, a value the trainer refuses); the others "
            "still run."
        ),
    )
    p.add_argument("space", help="space name (see `hpsearch spaces`) or YAML path")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="pin a parameter, e.g. --set optim.lr=0.01 --set optim.name=sgd (values read as "
        "YAML scalars, checked against the space)",
    )  # fmt: skip
    p.add_argument(
        "--random", type=int, default=0, metavar="N",
        help="train N random configs from the space instead of its defaults",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=int, default=0,
        help="seed of the random configs and of training (default 0)",
    )  # fmt: skip
    p.add_argument("--epochs", type=int, default=3, help="epochs per config (default 3)")
    p.add_argument(
        "--pretrained-weights",
        help="weights file for transfer learning (image spaces with transfer.pretrained=true)",
    )
    p.add_argument(
        "--dataset", help="bundled dataset name or a path (default: the family's bundled one)"
    )
    p.add_argument(
        "--metric",
        choices=sorted(METRICS),
        help="the metric of the summary (default: the family's, val_accuracy or val_rmse)",
    )
    p.add_argument(
        "--device", choices=["cpu", "cuda"], help="where to train (default: CUDA if present)"
    )
    p.set_defaults(func=_cmd_try)

    p = verbs.add_parser(
        "lr-find",
        help="LR range test: loss vs learning rate, and a suggested optim.lr range",
        description=(
            "The learning-rate range test (Leslie Smith; fastai's lr_find) on the space's "
            "default config (plus --set values): the LR grows exponentially every batch from "
            "--min-lr to --max-lr while the training loss is recorded and smoothed; the test "
            "stops when the smoothed loss exceeds 4x its best. Prints LR vs loss and a "
            "suggested range for a study's optim.lr bounds: high = the LR at the minimum smoothed "
            "loss, low = min(LR of steepest descent, high / 10) / 10. optim.lr and sched.name "
            "of the config are ignored. Tabular spaces only for now."
        ),
    )
    p.add_argument("space", help="space name (see `hpsearch spaces`) or YAML path")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="pin a parameter of the config, e.g. --set optim.name=sgd",
    )  # fmt: skip
    p.add_argument("--dataset", help="bundled dataset name or a CSV path (default digits)")
    p.add_argument("--min-lr", type=float, default=1e-7, help="first LR (default 1e-7)")
    p.add_argument("--max-lr", type=float, default=10.0, help="last LR (default 10)")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps at most (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model and batches (default 0)")
    p.add_argument(
        "--device", choices=["cpu", "cuda"], help="where to train (default: CUDA if present)"
    )
    p.add_argument(
        "--plot", metavar="FILE.png", help="also draw loss vs LR into this image (needs matplotlib)"
    )
    p.add_argument(
        "--write-space",
        metavar="FILE.yaml",
        help="write the space with optim.lr narrowed to the suggested range, for a study spec",
    )
    p.set_defaults(func=_cmd_lr_find)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hpsearch`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # hpsearch logs each trial itself
    try:
        return args.func(args)
    except HpsearchError as e:
        print(f"hpsearch {args.verb}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
