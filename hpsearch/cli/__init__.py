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
from hpsearch.cli.output import format_config, print_rows, status_rows
from hpsearch.errors import HpsearchError, UsageError
from hpsearch.families import FAMILY_METRICS, METRICS, default_metric
from hpsearch.cli.trial_display import format_trial, trial_rows

__all__ = ["main", "build_parser"]

_STORAGE_HELP = "study database URL (default: $HPSEARCH_STORAGE, else sqlite:///hpsearch.db)"
_SERVER_HELP = "hpsearch service URL (default: $HPSEARCH_SERVER, else http://127.0.0.1:8000)"
_TARGET_HELP = (
    "the label column of a CSV or Parquet --dataset (default: the column named 'target', else "
    "the last column; the one used is printed)"
)
_ALLOWED_HOST_HELP = (
    "a host name clients use to reach this server (its Host header), repeatable or "
    "comma-separated; requests naming another host get 400, against DNS rebinding. Always "
    "allowed: localhost, 127.0.0.1, ::1 and --host unless 0.0.0.0; '*.example.com' allows "
    "subdomains, '*' any (default: also $HPSEARCH_ALLOWED_HOSTS)"
)
_ARTIFACTS_HELP = (
    "artifact store of the trials' kept predictions (reports): a directory or "
    "s3://bucket/prefix, the same for every worker and reader; 'off' for none (default: "
    "$HPSEARCH_ARTIFACTS, else the folder hpsearch-artifacts beside a SQLite study database; "
    "for PostgreSQL reports are off unless set)"
)


def _allowed_hosts(args: argparse.Namespace) -> list[str]:
    """The host names `serve` and `dashboard` answer to: loopback, --host, env, --allowed-host."""
    from hpsearch.service.hosts import ALLOWED_HOSTS_ENV, allowed_hosts

    extra = [os.environ.get(ALLOWED_HOSTS_ENV, ""), *args.allowed_host]
    return allowed_hosts(extra, bind_host=args.host)


#: The dashboard's port when --dashboard-port is not given (another free one if it is taken).
_DASHBOARD_PORT = 8080


def _check_port_free(host: str, port: int, *, flag: str, what: str) -> None:
    """Raise UsageError in one line when ``port`` cannot be listened on at ``host``."""
    import socket

    if port == 0:
        return
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
    except socket.gaierror as e:
        raise UsageError(f"--host {host!r}: {e.strerror}") from e
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as e:
            raise UsageError(
                f"{what} port {port} on {host} is not free ({e.strerror}; another hpsearch "
                f"serve?): pass {flag} with a free port, or {flag} 0 for any"
            ) from e


def _start_dashboard_on_a_port(args: argparse.Namespace, **kwargs: Any) -> Any:
    """The dashboard on --dashboard-port, or without it on 8080 or else any free port."""
    from hpsearch.service.dashboard import start_dashboard

    if args.dashboard_port is not None:
        if args.dashboard_port == args.port and args.port != 0:
            raise UsageError(
                f"--dashboard-port {args.dashboard_port} is the API's --port: give them "
                "different ports"
            )
        try:
            return start_dashboard(host=args.host, port=args.dashboard_port, **kwargs)
        except OSError as e:
            raise UsageError(
                f"dashboard port {args.dashboard_port} on {args.host} is not free "
                f"({e.strerror}): pass --dashboard-port with a free port, 0 for any, or "
                "--no-dashboard"
            ) from e
    preferred = _DASHBOARD_PORT if args.port != _DASHBOARD_PORT else 0
    try:
        return start_dashboard(host=args.host, port=preferred, **kwargs)
    except OSError:
        from urllib.parse import urlsplit

        dashboard = start_dashboard(host=args.host, port=0, **kwargs)
        print(
            f"dashboard port {_DASHBOARD_PORT} is taken: the dashboard uses "
            f"{urlsplit(dashboard.url).port} instead (choose one with --dashboard-port)",
            flush=True,
        )
        return dashboard


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hpsearch.db.storage import open_storage, redact, resolve_storage_url

    url = resolve_storage_url(args.storage)
    os.environ["HPSEARCH_STORAGE"] = (
        url  # the app's settings read it (service imports hpsearch, not back)
    )
    if args.artifacts is not None:
        os.environ["HPSEARCH_ARTIFACTS"] = args.artifacts  # read by the app's settings too
    allowed = _allowed_hosts(args)
    os.environ["HPSEARCH_ALLOWED_HOSTS"] = ",".join(allowed)  # the app's settings read it too
    _check_port_free(args.host, args.port, flag="--port", what="API")  # before the dashboard
    if not args.no_dashboard:
        from hpsearch.analysis.artifacts import open_artifact_store

        open_storage(url)  # create the tables before two servers race to
        store = open_artifact_store(args.artifacts, storage_url=url)
        dashboard = _start_dashboard_on_a_port(
            args, storage_url=url, artifact_store=store, allowed_hosts=allowed
        )
        print(f"dashboard: {dashboard.url} (log in at {dashboard.url}/login)", flush=True)
    shown = "127.0.0.1" if args.host == "0.0.0.0" else args.host
    print(f"API: http://{shown}:{args.port} (docs at /docs) over {redact(url)}", flush=True)
    uvicorn.run(
        "hpsearch.service.app:create_app", factory=True, host=args.host, port=args.port, log_level="warning"
    )
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    import threading

    from hpsearch.analysis.artifacts import open_artifact_store
    from hpsearch.service.dashboard import start_dashboard

    store = open_artifact_store(args.artifacts, storage_url=args.storage)
    try:
        dashboard = start_dashboard(
            args.storage,
            host=args.host,
            port=args.port,
            artifact_store=store,
            allowed_hosts=_allowed_hosts(args),
        )
    except OSError as e:
        raise UsageError(
            f"port {args.port} on {args.host} is not free ({e.strerror}): pass --port with a "
            "free port, or --port 0 for any"
        ) from e
    print(f"dashboard: {dashboard.url} (log in at {dashboard.url}/login)", flush=True)
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
        checkpoint_dir=args.checkpoint_dir,
        artifacts=args.artifacts,
        keep_artifacts=args.keep_artifacts,
        data_roots=args.data_root,
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from hpsearch.analysis.artifacts import open_artifact_store
    from hpsearch.analysis.report import default_report_dir, study_report, write_report
    from hpsearch.db.storage import open_storage, redact, resolve_storage_url

    url = resolve_storage_url(args.storage)
    why = "--storage" if args.storage else "$HPSEARCH_STORAGE"
    if not args.storage and not os.environ.get("HPSEARCH_STORAGE"):
        why = "the default"
    storage = open_storage(url, create=False)  # a missing file: one line of its own
    print(f"reading {redact(url)} ({why})", file=sys.stderr, flush=True)
    store = open_artifact_store(args.artifacts, storage_url=args.storage)
    report, preds = study_report(storage, store, args.name, args.trial)
    out = args.out or default_report_dir(args.name, report.trial)  # never the raw name
    document = write_report(report, preds, out, fmt=args.format)
    print(document)
    print("\n".join(report.headline()))
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
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
    with _open_source(args, doing="writing", create=True) as client:
        created = client.create_study(spec)
    print(created["name"])
    return 0


#: The rule of every verb that reads or changes studies, for `hpsearch --help` and the README.
SOURCE_RULE = (
    "Where studies are read and changed: status, best, trials, importance, workers, submit, "
    "stop, resume, extend, delete, prune, enqueue and pruner work either on the study database itself "
    "(--storage URL, as Optuna's CLI does: no service, no token) or through an hpsearch service "
    "(--server URL). One rule picks: a flag on the command line wins (giving both is an error); "
    "else $HPSEARCH_STORAGE if set; else $HPSEARCH_SERVER if set (with both set, the database "
    "wins, and a read's line on stderr says so); else the service at http://127.0.0.1:8000. "
    "Each read says on stderr where it read, e.g. `reading sqlite:///hpsearch.db (--storage)`; "
    "a change that fails names where it was sent. serve, "
    "worker, dashboard, report and token use the database only: --storage, else "
    "$HPSEARCH_STORAGE, else sqlite:///hpsearch.db. Reads never create a database: a URL "
    "naming a file that does not exist is an error."
)


def _source(args: argparse.Namespace) -> tuple[str, str, str]:
    """``(kind, url, why)``: where this verb works, "storage" or "server", by :data:`SOURCE_RULE`."""
    from hpsearch.client import DEFAULT_SERVER

    storage, server = getattr(args, "storage", None), getattr(args, "server", None)
    if storage and server:
        raise UsageError(
            f"give --storage or --server, not both (got --storage {storage!r} and --server "
            f"{server!r}): --storage works on the study database itself, --server asks a service"
        )
    if storage:
        return "storage", storage, "--storage"
    if server:
        return "server", server, "--server"
    env_storage = os.environ.get("HPSEARCH_STORAGE", "").strip()
    env_server = os.environ.get("HPSEARCH_SERVER", "").strip()
    if env_storage:
        why = "$HPSEARCH_STORAGE" + (
            ", which wins over $HPSEARCH_SERVER; pass --server to ask the service"
            if env_server
            else ""
        )
        return "storage", env_storage, why
    if env_server:
        return "server", env_server, "$HPSEARCH_SERVER"
    return "server", DEFAULT_SERVER, "the default; set --storage or --server to read elsewhere"


def _open_source(args: argparse.Namespace, *, doing: str, create: bool = False) -> Any:
    """A :class:`Client` of the service or a :class:`DatabaseClient`, by :data:`SOURCE_RULE`.

    ``doing`` "reading": one line on stderr says where, e.g. ``reading sqlite:///x.db
    (--storage)``. "writing": no extra line (a bad input stays one line), but an error names
    where it was. A database is never created unless ``create``.
    """
    kind, url, why = _source(args)
    if kind == "storage":
        from hpsearch.cli.sources import DatabaseClient
        from hpsearch.db.storage import redact, resolve_storage_url

        shown = redact(resolve_storage_url(url))
        args.source_line = f"{doing} {shown} ({why})"
        client: Any = DatabaseClient(url, create=create)  # a missing file: its own error line
    else:
        from hpsearch.client import Client, masked_url

        args.source_line = f"{doing} {masked_url(url.rstrip('/'))} ({why})"
        client = Client(url)
    if doing == "reading":
        print(args.source_line, file=sys.stderr, flush=True)
        args.source_line_shown = True
    return client


def _reader(args: argparse.Namespace) -> Any:
    """Where a read verb reads, by :data:`SOURCE_RULE`: a service client or the database."""
    return _open_source(args, doing="reading")


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
        state = s.get("state") or ("done" if s["done"] else "open")
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


def _importance_lines(report: dict[str, Any]) -> list[str]:
    """The table of `hpsearch importance`: param, importance bar, tier, verdict."""
    width = max(len(r["param"]) for r in report["rows"])
    title = (
        f"parameter importance of {report['study']} ({report['evaluator']}, "
        f"{report['trials_used']} trials; {report['trials_note']})"
    )
    lines = [
        title,
        f"{'rank':>4}  {'param':<{width}}  {'importance':<27}  {'tier':<6}  verdict",
    ]
    for row in report["rows"]:
        tier = row["impact"] or "-"
        if row["importance"] is None:
            lines.append(
                f"{'-':>4}  {row['param']:<{width}}  {'-':<27}  {tier:<6}  {row['reason']}"
            )
            continue
        bar = "#" * round(20 * row["importance"])
        verdict = row["verdict"] + (f" ({row['reason']})" if row["reason"] else "")
        lines.append(
            f"{row['rank']:>4}  {row['param']:<{width}}  {bar:<20} {row['importance']:6.3f}  "
            f"{tier:<6}  {verdict}"
        )
    lines += [f"note: {note}" for note in report["notes"]]
    return lines


def _cmd_importance(args: argparse.Namespace) -> int:
    with _reader(args) as reader:
        report = reader.importance(args.name, evaluator=args.evaluator)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(_importance_lines(report)))
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
    from hpsearch.cli.demo import run_demo

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
    from hpsearch.cli.tryout import (
        check_assignments,
        configs_to_try,
        describe_target,
        device_defaults,
        epoch_header,
        format_config_line,
        format_epoch,
        format_summary,
        make_task,
        parse_assignments,
        pin_pretrained,
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
        target=args.target,
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


def _cmd_lr_find(args: argparse.Namespace) -> int:
    from hpsearch.spaces import load_space
    from hpsearch.cli.tryout import check_assignments, describe_target, make_task, parse_assignments

    space = load_space(args.space)
    fixed = check_assignments(space, parse_assignments(args.set))
    task = make_task(space, dataset=args.dataset, target=args.target)
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


def _when(moment: Any) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def _cmd_token(args: argparse.Namespace) -> int:
    from hpsearch.db import tokens
    from hpsearch.db.storage import open_storage, redact, resolve_storage_url

    if args.token_verb == "create" and args.project is not None:
        tokens.check_project(args.project)  # before the database is opened (or created)
    url = resolve_storage_url(args.storage)
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
    width = max(4, *(len(t.name) for t in found))
    projects = [t.project or "(all)" for t in found]  # "(all)": no project, every study
    pwidth = max(7, *(len(p) for p in projects))
    print(
        f"{'name':<{width}}  {'scopes':<10}  {'project':<{pwidth}}  {'created':<16}  "
        f"{'last used':<16}  revoked"
    )
    for t, project in zip(found, projects, strict=True):
        print(
            f"{t.name:<{width}}  {','.join(t.scopes):<10}  {project:<{pwidth}}  "
            f"{_when(t.created_at):<16}  {_when(t.last_used_at):<16}  {_when(t.revoked_at)}"
        )
    return 0


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def _cmd_workers(args: argparse.Namespace) -> int:
    with _reader(args) as reader:
        listing = reader.workers(all=args.all, study=args.study)
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    if not listing["data"]:
        which = "workers" if args.all else "live workers"
        where = f" on study {args.study!r}" if args.study else ""
        print(f"no {which}{where}: start one with `hpsearch worker --storage URL`")
        return 0
    rows = [
        (
            w["host"],
            str(w["pid"]),
            w["device"] + (f" ({w['gpu_name']})" if w["gpu_name"] else ""),
            w["study"] or "-",
            "-" if w["trial_number"] is None else str(w["trial_number"]),
            _ago(w["seconds_since_seen"]),
            str(w["trials_run"]),
            "live" if w["live"] else "gone",
        )
        for w in listing["data"]
    ]
    header = ("host", "pid", "device", "study", "trial", "heartbeat", "trials", "state")
    if not args.all:  # every row is live
        header, rows = header[:-1], [row[:-1] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _client(args: argparse.Namespace) -> Any:
    """Where a verb that changes a study works, by :data:`SOURCE_RULE`."""
    return _open_source(args, doing="writing")


def _cmd_stop(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.stop(args.name)
    running = status["counts"]["running"]
    print(f"study {args.name} stopped: no new trials; {running} running trial(s) will finish")
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.resume(args.name)
    print(f"study {args.name} is {status['state']}" + (
        f": {status['done_reason']}" if status["done_reason"] else ": workers pick it up again"
    ))  # fmt: skip
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


def _cmd_extend(args: argparse.Namespace) -> int:
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
            "give what to change: --trials, --max-failures, --seconds, --dataset or --target "
            f"(to continue a failed study unchanged: `hpsearch resume {args.name}`)"
        )
    if args.dataset is not None and not args.remote_data:
        from hpsearch.studies.checks import check_local_task

        check_local_task({"task": task})
    with _open_source(args, doing="writing") as client:
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
        print(f"it is open: workers pick it up (`hpsearch worker --study {args.name}`)")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"deleting {args.name!r} cannot be undone: pass --yes to confirm")
        answer = input(f"delete study {args.name} and all its trials? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    with _client(args) as client:
        client.delete(args.name, force=args.force)
    print(f"study {args.name} deleted")
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.prune(args.name, args.number)
    print(f"asked the worker to prune trial {args.number} of {args.name} after its current epoch")
    return 0


def _cmd_trials(args: argparse.Namespace) -> int:
    with _reader(args) as client:
        if args.csv == "-":
            sys.stdout.write(client.trials_csv(args.name, state=args.state) or "")
            return 0
        if args.csv:
            client.trials_csv(args.name, state=args.state, path=args.csv)
            print(f"trials of {args.name} written to {args.csv}")
            return 0
        if args.number is not None:
            one = client.trial(args.name, args.number)
        else:
            page = client.trials(args.name, state=args.state, limit=args.limit)
    if args.number is not None:
        print(json.dumps(one, indent=2) if args.json else format_trial(one))
        return 0
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    print("\n".join(trial_rows(page["data"])))
    if any(t.get("fail_traceback") for t in page["data"]):
        print(f"(`hpsearch trials {args.name} N` shows trial N's traceback)")
    if page["count"] > len(page["data"]):
        print(f"({len(page['data'])} of {page['count']}; --limit for more, --csv FILE for all)")
    return 0


def _cmd_enqueue(args: argparse.Namespace) -> int:
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
    with _client(args) as client:
        result = client.enqueue(args.name, configs)
    print(f"enqueued {result['enqueued']} of {result['given']} config(s) for {args.name}")
    return 0


def _cmd_pruner(args: argparse.Namespace) -> int:
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
    with _client(args) as client:
        spec = client.set_pruner(args.name, args.pruner, pruner_args)
    print(f"study {args.name} now prunes with {json.dumps(spec['pruner'])}")
    return 0


def _add_source_args(p: argparse.ArgumentParser, *, creates: bool = False) -> None:
    """--server and --storage: where a verb reads or changes studies (:data:`SOURCE_RULE`)."""
    p.add_argument(
        "--server", metavar="URL",
        help="ask this hpsearch service (default: $HPSEARCH_SERVER unless $HPSEARCH_STORAGE is "
        "set, else http://127.0.0.1:8000)",
    )  # fmt: skip
    p.add_argument(
        "--storage", metavar="URL",
        help="work on this study database directly, as Optuna's CLI does: no service needed "
        "(default: $HPSEARCH_STORAGE); "
        + ("created if it does not exist" if creates else "never creates one"),
    )  # fmt: skip


def _add_reader_args(p: argparse.ArgumentParser, *, json_help: str = "print JSON") -> None:
    """--server, --storage and --json: the options of every verb that reads results."""
    _add_source_args(p)
    p.add_argument("--json", action="store_true", help=json_help)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(
        prog="hpsearch",
        description=(
            "Hyperparameter search for neural-network training. Search spaces come from a "
            "training checklist, weighted by impact; workers on any number of machines pull "
            "trials from one shared study database. Start with `hpsearch demo`."
        ),
        epilog=SOURCE_RULE,
    )
    parser.add_argument("--version", action="version", version=f"hpsearch {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser(
        "demo",
        help="run a whole search on bundled data: service, dashboard, two workers, best config",
        description=(
            "Start the REST service and the dashboard on a SQLite file, submit the demo study "
            "(a small network on scikit-learn's digits), run it with local workers while showing "
            "progress, then print the best config and the URLs. Keeps serving until Ctrl-C or "
            "SIGTERM, either of which stops everything it started and revokes its API token. "
            "When its ports are taken it uses free ones and prints the `export "
            "HPSEARCH_SERVER=...` line that points another shell at it."
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
            "database. Both answer to the API tokens of that database (`hpsearch token "
            "create`): reads need scope read unless HPSEARCH_ANONYMOUS_READS=true, changes "
            "scope write; in a browser, log in to the dashboard at /dashboard/login."
        ),
    )
    p.add_argument("--storage", help=_STORAGE_HELP)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)",
    )
    p.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    p.add_argument(
        "--dashboard-port", type=int,
        help="dashboard port (default 8080, or another free one if it is taken)",
    )  # fmt: skip
    p.add_argument("--no-dashboard", action="store_true", help="serve the API only")
    p.add_argument("--artifacts", help=_ARTIFACTS_HELP)
    p.add_argument(
        "--allowed-host", action="append", default=[], metavar="HOST", help=_ALLOWED_HOST_HELP
    )
    p.set_defaults(func=_cmd_serve)

    p = verbs.add_parser(
        "dashboard",
        help="run optuna-dashboard over the study database",
        description=(
            "Serve optuna-dashboard over the study database, behind its API tokens: reads need "
            "a token of scope read (unless HPSEARCH_ANONYMOUS_READS=true), changes (notes, "
            "tell, rename, delete, artifacts) one of scope write. In a browser, log in at "
            "/dashboard/login with a token and log out at /dashboard/logout; scripts send "
            "'Authorization: Bearer <token>'."
        ),
    )
    p.add_argument("--storage", help=_STORAGE_HELP)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--artifacts", help=_ARTIFACTS_HELP + "; the trial view lists and serves them")
    p.add_argument(
        "--allowed-host", action="append", default=[], metavar="HOST", help=_ALLOWED_HOST_HELP
    )
    p.set_defaults(func=_cmd_dashboard)

    p = verbs.add_parser(
        "worker",
        help="pull trials from the study database and run them until no budget is left",
        description=(
            "Run trials of hpsearch studies from the shared study database. Needs only the "
            "database URL, never the service. Without --study, serves every open study. "
            "Whoever holds a write token writes the specs, so the built-in trainer reads only "
            "bundled datasets (digits, diabetes, tones) and files under the folders given with "
            "--data-root (or $HPSEARCH_DATA_ROOTS); with none, bundled datasets only. A path "
            "outside them (symlinks followed) fails its trial with a one-line reason. "
            "`hpsearch try` and `lr-find` are not confined: they read the path you name on "
            "your own command line."
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
        help="your own training function, package.module:function(config, report) -> metric "
        "(its trials get no error-analysis reports: only the built-in trainer hands over "
        "predictions)",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="when no study has budget left, wait for new ones instead of exiting",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads per worker (default: torch's choice); on a CPU trials train in "
        "fp32, train.amp included, unless HPSEARCH_CPU_AMP=1 (bf16 autocast)",
    )
    p.add_argument("--max-trials", type=int, help="exit after running this many trials")
    p.add_argument(
        "--data-root", action="append", metavar="DIR",
        help="a folder whose files (datasets, pretrained weights) studies may name; repeat for "
        "more (default: $HPSEARCH_DATA_ROOTS, folders separated by "
        f"'{os.pathsep}'; with neither, bundled datasets only)",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint-dir",
        default=os.environ.get("HPSEARCH_CHECKPOINT_DIR") or None,
        help="save a checkpoint after every epoch here (a local or shared directory), so a "
        "trial retried after its worker was killed or stopped resumes from its last epoch; "
        "one folder per study, study-<id> (default: $HPSEARCH_CHECKPOINT_DIR, else no "
        "checkpoints)",
    )
    p.add_argument("--artifacts", help=_ARTIFACTS_HELP)
    p.add_argument(
        "--keep-artifacts",
        help="whose predictions are kept for reports: best:N (the N best complete trials; "
        "the rest are removed as better ones come) or all (default: $HPSEARCH_KEEP_ARTIFACTS, "
        "else best:3)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    p.set_defaults(func=_cmd_worker)

    p = verbs.add_parser(
        "submit",
        help="submit a study spec (YAML) to the service or the study database; prints its name",
    )
    p.add_argument("spec", help="study spec file (YAML or JSON)")
    p.add_argument("--name", help="study name (overrides the file's)")
    p.add_argument(
        "--remote-data",
        action="store_true",
        help="task.dataset exists on the workers' machines only: do not check here that the "
        "path exists and has the task.target column",
    )
    _add_source_args(p, creates=True)
    p.set_defaults(func=_cmd_submit)

    p = verbs.add_parser("status", help="list studies, or show one study's progress")
    p.add_argument("name", nargs="?", help="study name (default: list every study)")
    _add_reader_args(p)
    p.set_defaults(func=_cmd_status)

    p = verbs.add_parser(
        "workers",
        help="list the live workers: host, device, study and trial, last heartbeat",
        description=(
            "Every worker process records itself in the study database and beats while it "
            "runs; a worker is live while its heartbeat is within the grace period. Lists "
            "host, pid, device (and GPU), the study and trial it runs, its last heartbeat and "
            "how many trials it has run."
        ),
    )
    p.add_argument("--all", action="store_true", help="also list stopped and dead workers")
    p.add_argument("--study", help="only workers running a trial of this study now")
    _add_reader_args(p)
    p.set_defaults(func=_cmd_workers)

    p = verbs.add_parser("best", help="print a study's best trial and its full config")
    p.add_argument("name", help="study name")
    _add_reader_args(p)
    p.set_defaults(func=_cmd_best)

    p = verbs.add_parser(
        "importance",
        help="which parameters mattered in a study, beside the checklist's impact tiers",
        description=(
            "Parameter importance over the study's complete trials (pruned and failed trials "
            "do not count), each parameter beside its checklist tier and row, with a verdict: "
            "ranked in its tier's third of the ranking (agrees), above it (matters more than "
            "the checklist says) or below it (matters less). Needs 2 complete trials at least."
        ),
    )
    p.add_argument("name", help="study name")
    p.add_argument(
        "--evaluator", choices=["ped_anova", "fanova"], default="ped_anova",
        help="ped_anova (default; fast at any size) or fanova (a seeded random forest over the "
        "latest 2000 complete trials)",
    )  # fmt: skip
    _add_reader_args(p, json_help="print the report as JSON")
    p.set_defaults(func=_cmd_importance)

    p = verbs.add_parser(
        "report",
        help="write the error analysis of a study's best trial (or --trial N): HTML or Markdown",
        description=(
            "Error analysis of a trial's final model on the validation split, from the "
            "predictions its worker kept in the artifact store: per-class precision, recall "
            "and F1 and the confusion matrix (or RMSE, MAE and residuals), and the "
            "highest-loss examples, with PNG plots beside the document. Reads the study "
            "database and the artifact store directly. Prints the document's path and a "
            "summary. Only trials run by the built-in trainer with a store, and among the "
            "best kept (--keep-artifacts on the workers), have a report."
        ),
    )
    p.add_argument("name", help="study name")
    p.add_argument("--trial", type=int, help="trial number (default: the study's best trial)")
    p.add_argument("--out", help="folder to write into (default: ./hpsearch-report-STUDY-trialN)")
    p.add_argument("--format", choices=["html", "md"], default="html", help="html (default) or md")
    p.add_argument("--storage", help=_STORAGE_HELP)
    p.add_argument("--artifacts", help=_ARTIFACTS_HELP)
    p.set_defaults(func=_cmd_report)

    p = verbs.add_parser(
        "stop", help="stop a study: workers start no new trial of it (running ones finish)"
    )
    p.add_argument("name", help="study name")
    _add_source_args(p)
    p.set_defaults(func=_cmd_stop)

    p = verbs.add_parser("resume", help="let a stopped study take trials again")
    p.add_argument("name", help="study name")
    _add_source_args(p)
    p.set_defaults(func=_cmd_resume)

    p = verbs.add_parser(
        "extend",
        help="change a stopped, failed or finished study and continue it: more trials, a "
        "higher --max-failures, a corrected --dataset or --target",
        description="Change a study's budget or task data, then let workers continue it "
        "(PATCH /studies/NAME). A failed study runs again; the change is checked like a new "
        "spec and recorded in the study's history (`hpsearch status NAME`). Values are "
        "totals: --trials 40 lets the study finish 40 trials in all, counting those done; "
        "--trials +10 gives it 10 more. The space, the metric, the epochs and the rest "
        "cannot change: submit a new study for those (warm_start starts it from this one).",
    )
    p.add_argument("name", help="study name")
    p.add_argument("--trials", metavar="N|+N", help="the trial budget: a total, or +N for N more")
    p.add_argument("--max-failures", type=int, help="failed trials tolerated (a total)")
    p.add_argument("--seconds", type=float, help="the time budget in seconds since creation")
    p.add_argument("--dataset", help="task.dataset: a bundled name or a path on the workers")
    p.add_argument("--target", help="task.target: the label column ('' for the default)")
    p.add_argument(
        "--remote-data",
        action="store_true",
        help="the --dataset path exists on the workers' machines only: do not check it here",
    )
    _add_source_args(p)
    p.set_defaults(func=_cmd_extend)

    p = verbs.add_parser("delete", help="delete a study and all its trials (cannot be undone)")
    p.add_argument("name", help="study name")
    p.add_argument(
        "--force", action="store_true", help="delete even while trials run (their results are lost)"
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _add_source_args(p)
    p.set_defaults(func=_cmd_delete)

    p = verbs.add_parser(
        "prune", help="ask the worker running a trial to prune it after its current epoch"
    )
    p.add_argument("name", help="study name")
    p.add_argument("number", type=int, help="trial number")
    _add_source_args(p)
    p.set_defaults(func=_cmd_prune)

    p = verbs.add_parser(
        "trials",
        help="list a study's trials (why each failed), show one, or export them all as CSV",
    )
    p.add_argument("name", help="study name")
    p.add_argument(
        "number", nargs="?", type=int,
        help="show this trial: its config, curve, and why it failed (your objective's traceback)",
    )  # fmt: skip
    p.add_argument(
        "--state", help="only trials in this state: running, complete, pruned, fail, waiting"
    )
    p.add_argument("--csv", metavar="FILE", help="write every trial as CSV to FILE ('-': stdout)")
    p.add_argument("--limit", type=int, default=50, help="trials to list (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_source_args(p)
    p.set_defaults(func=_cmd_trials)

    p = verbs.add_parser(
        "enqueue",
        help="queue configs for a study's workers to run before sampling (warm start by hand)",
        description=(
            "Read CONFIG (YAML or JSON: one {param: value} mapping or a list of them) and queue "
            "each config as a trial the study's workers run before sampling new ones. Every "
            "config is checked against the study's space first; one bad config queues none."
        ),
    )
    p.add_argument("name", help="study name")
    p.add_argument("configs", metavar="CONFIG.yaml", help="a mapping or a list of mappings")
    _add_source_args(p)
    p.set_defaults(func=_cmd_enqueue)

    p = verbs.add_parser(
        "pruner",
        help="change a study's pruner; workers use it for their next trials",
        description=(
            "Replace the pruner stored with the study, e.g. `hpsearch pruner NAME asha --arg "
            "reduction_factor=2` or `hpsearch pruner NAME patient --arg patience=2 --arg "
            "wraps=median`. The pruner is built first: a bad name or argument changes nothing."
        ),
    )
    p.add_argument("name", help="study name")
    p.add_argument("pruner", help="none, median, percentile, asha, hyperband, wilcoxon, patient")
    p.add_argument(
        "--arg", action="append", default=[], metavar="KEY=VALUE",
        help="a keyword argument of the pruner (values read as YAML scalars)",
    )  # fmt: skip
    _add_source_args(p)
    p.set_defaults(func=_cmd_pruner)

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
    p.add_argument("--target", help=_TARGET_HELP)
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
    p.add_argument("--target", help=_TARGET_HELP)
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

    p = verbs.add_parser(
        "token",
        help="create, list or revoke the service's API tokens (in the study database)",
        description=(
            "API tokens of the REST service live in the study database, hashed: whoever holds "
            "the database URL manages them here, no service needed. Scope read allows the "
            "GET routes, write (implies read) also allows every change: submitting, pruning, "
            "stopping or deleting studies. --project PREFIX limits a token to the studies whose "
            "names start with PREFIX (one team's studies); a token without a project covers "
            "every study, so an unlimited write token is an admin token: give teams project "
            "tokens. "
            "Clients send a token as 'Authorization: Bearer <secret>'; the hpsearch CLI and "
            "client send $HPSEARCH_API_TOKEN."
        ),
    )
    token_verbs = p.add_subparsers(dest="token_verb", required=True, metavar="ACTION")
    t = token_verbs.add_parser(
        "create", help="create a token and print its secret (shown only this once)"
    )
    t.add_argument("name", help="a name to know it by, e.g. ci-submit (never reused)")
    t.add_argument(
        "--scope", choices=["read", "write"], default="read",
        help="read (default): the GET routes; write: also every change (submit, prune, ...)",
    )  # fmt: skip
    t.add_argument(
        "--project", metavar="PREFIX",
        help="limit the token to the studies whose names start with PREFIX, e.g. team-a "
        "(reads, writes and listings; study names it creates get the prefix); default: "
        "every study",
    )  # fmt: skip
    t.add_argument("--storage", help=_STORAGE_HELP)
    t.set_defaults(func=_cmd_token)
    t = token_verbs.add_parser(
        "list", help="list tokens: name, scopes, project, created, last used, revoked"
    )
    t.add_argument("--storage", help=_STORAGE_HELP)
    t.set_defaults(func=_cmd_token)
    t = token_verbs.add_parser("revoke", help="revoke a token: its secret stops working at once")
    t.add_argument("name", help="the token's name (see `hpsearch token list`)")
    t.add_argument("--storage", help=_STORAGE_HELP)
    t.set_defaults(func=_cmd_token)
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
        code = args.func(args)
        sys.stdout.flush()  # here, so that a reader gone (`| head`) is caught below
        return code
    except BrokenPipeError:
        # The reader of stdout left (`hpsearch best NAME | head`): it has what it wanted. Point
        # stdout at /dev/null so that the interpreter's last flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except HpsearchError as e:
        where = getattr(args, "source_line", "")
        shown = getattr(args, "source_line_shown", False)
        suffix = f" [{where}]" if where and not shown else ""  # reads said it already
        print(f"hpsearch {args.verb}: error: {e}{suffix}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
