"""The verbs that read a study's results: status, best, trials, importance, report."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from typing import Any

from hpsearch.cli import options
from hpsearch.cli.command import Command
from hpsearch.cli.output import Column, format_config, print_rows, render_table, status_rows
from hpsearch.cli.sources import database_source, open_source
from hpsearch.cli.trial_display import format_trial, trial_rows

__all__ = ["Best", "Importance", "Pareto", "Report", "Status", "Trials"]


def _reader(args: argparse.Namespace) -> Any:
    """Where a read verb reads (:data:`~hpsearch.cli.sources.SOURCE_RULE`), said on stderr."""
    return open_source(args, doing="reading")


class Status(Command, name="status", options=(options.SOURCE, options.JSON)):
    """list studies, or show one study's progress"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name", nargs="?", help="study name (default: list every study)")

    def run(self, args: argparse.Namespace) -> int:
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
        columns = [
            Column(title="study", width=36),
            Column(title="finished", align=">", width=10, gap=" "),
            Column(title="running", align=">", width=8, gap=" "),
            Column(title="best", align=">", width=10, gap=" "),
            Column(title="state"),
        ]
        rows = [
            (
                s["name"],
                f"{s['finished']}" + (f"/{s['budget_trials']}" if s["budget_trials"] else ""),
                str(s["counts"]["running"]),
                "-" if s["best_value"] is None else f"{s['best_value']:.4f}",
                s.get("state") or ("done" if s["done"] else "open"),
            )
            for s in listing["data"]
        ]
        print("\n".join(render_table(columns, rows)))
        return 0


class Best(Command, name="best", options=(options.STUDY, options.SOURCE, options.JSON)):
    """print a study's best trial and its full config"""

    def run(self, args: argparse.Namespace) -> int:
        best = _reader(args).best(args.name)
        if args.json:
            print(json.dumps(best, indent=2))
            return 0
        print(f"best trial of {args.name}: #{best['number']}  value {best['value']:.4f}")
        print("\n".join(format_config(best["config"])))
        return 0


_LIMIT = re.compile(r"^\s*([A-Za-z][\w./-]*)\s*(<=|>=)\s*(\S+)\s*$")


def _limits(texts: list[str]) -> dict[str, Any]:
    """``--pick latency_ms<=5`` as bounds by metric; raises UsageError in one line."""
    from hpsearch.errors import UsageError
    from hpsearch.studies.objectives import Bound

    out: dict[str, Any] = {}
    for text in texts:
        match = _LIMIT.match(text)
        try:
            number = float(match.group(3)) if match else math.nan
        except ValueError:
            number = math.nan
        if match is None or not math.isfinite(number):
            raise UsageError(f"--pick {text!r} must look like METRIC<=NUMBER or METRIC>=NUMBER")
        name, op = match.group(1), match.group(2)
        given = out[name].model_dump() if name in out else {}
        out[name] = Bound.model_validate({**given, "max" if op == "<=" else "min": number})
    return out


class Pareto(Command, name="pareto", options=(options.STUDY, options.SOURCE, options.JSON)):
    """print a study's Pareto front (several objectives), or pick one point of it

    The front is the complete trials that break no constraint and that no other trial beats in
    every objective, best in the first objective first, with the hypervolume it dominates up to
    each objective's worst value so far. --pick METRIC<=X (repeatable) prints the front's
    best trial in the first objective among those within the limits, with its full config:
    for example the most accurate under a latency budget.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--pick", action="append", default=[], metavar="METRIC<=X",
            help="print the front's best point (first objective) within these limits, e.g. "
            "--pick latency_ms<=5",
        )  # fmt: skip

    def run(self, args: argparse.Namespace) -> int:
        from hpsearch.studies.pareto import ParetoFront, pick

        limits = _limits(args.pick)
        front = _reader(args).pareto(args.name)
        if args.pick:
            chosen = pick(ParetoFront.model_validate(front), limits).model_dump(mode="json")
            if args.json:
                print(json.dumps(chosen, indent=2))
                return 0
            names = [o["metric"] for o in front["objectives"]]
            shown = ", ".join(
                f"{n} {v:.4g}" for n, v in zip(names, chosen["values"] or [chosen["value"]])
            )
            print(f"picked trial #{chosen['number']} of {args.name}: {shown}")
            print("\n".join(format_config(chosen["config"])))
            return 0
        if args.json:
            print(json.dumps(front, indent=2))
            return 0
        names = [o["metric"] for o in front["objectives"]]
        volume = front["hypervolume"]
        print(
            f"pareto front of {args.name}: {len(front['trials'])} of {front['complete']} complete "
            "trial(s); hypervolume "
            + ("-" if volume is None else f"{volume:.4g}")
            + (f" up to {front['reference_point']}" if front["reference_point"] else "")
        )
        if not front["trials"]:
            print("no complete trial yet")
            return 0
        columns = [Column(title="trial", align=">", width=6)] + [
            Column(title=n, align=">", width=max(10, len(n)), gap=" ") for n in names
        ]
        rows = [
            (
                f"#{t['number']}",
                *("-" if v is None else f"{v:.4g}" for v in (t["values"] or [t["value"]])),
            )
            for t in front["trials"]
        ]
        print("\n".join(render_table(columns, rows)))
        return 0


class Trials(Command, name="trials", options=(options.STUDY, options.SOURCE, options.JSON)):
    """list a study's trials (why each failed), show one, or export them all as CSV"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "number", nargs="?", type=int,
            help="show this trial: its config, curve, and why it failed (your objective's "
            "traceback)",
        )  # fmt: skip
        parser.add_argument(
            "--state", help="only trials in this state: running, complete, pruned, fail, waiting"
        )
        parser.add_argument(
            "--csv", metavar="FILE", help="write every trial as CSV to FILE ('-': stdout)"
        )
        parser.add_argument("--limit", type=int, default=50, help="trials to list (default 50)")

    def run(self, args: argparse.Namespace) -> int:
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


def importance_lines(report: dict[str, Any]) -> list[str]:
    """The table of `hpsearch importance`: param, importance bar, tier, verdict."""
    title = (
        f"parameter importance of {report['study']} ({report['evaluator']}, "
        f"{report['trials_used']} trials; {report['trials_note']})"
    )
    columns = [
        Column(title="rank", align=">", width=4),
        Column(title="param", width=max(len(r["param"]) for r in report["rows"])),
        Column(title="importance", width=27),
        Column(title="tier", width=6),
        Column(title="verdict"),
    ]
    rows = []
    for row in report["rows"]:
        tier = row["impact"] or "-"
        if row["importance"] is None:
            rows.append(("-", row["param"], "-", tier, row["reason"]))
            continue
        bar = "#" * round(20 * row["importance"])
        verdict = row["verdict"] + (f" ({row['reason']})" if row["reason"] else "")
        shown = f"{bar:<20} {row['importance']:6.3f}"
        rows.append((str(row["rank"]), row["param"], shown, tier, verdict))
    return [title, *render_table(columns, rows)] + [f"note: {note}" for note in report["notes"]]


class Importance(Command, name="importance", options=(options.STUDY, options.SOURCE, options.JSON)):
    """which parameters mattered in a study, beside the checklist's impact tiers

    Parameter importance over the study's complete trials (pruned and failed trials do not
    count), each parameter beside its checklist tier and row, with a verdict: ranked in its
    tier's third of the ranking (agrees), above it (matters more than the checklist says) or
    below it (matters less). Needs 2 complete trials at least.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--evaluator", choices=["ped_anova", "fanova"], default="ped_anova",
            help="ped_anova (default; fast at any size) or fanova (a seeded random forest over "
            "the latest 2000 complete trials)",
        )  # fmt: skip

    def run(self, args: argparse.Namespace) -> int:
        with _reader(args) as reader:
            report = reader.importance(args.name, evaluator=args.evaluator)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print("\n".join(importance_lines(report)))
        return 0


class Report(Command, name="report", options=(options.STUDY, options.STORAGE, options.ARTIFACTS)):
    """write the error analysis of a study's best trial (or --trial N): HTML or Markdown

    Error analysis of a trial's final model on the validation split, from the predictions its
    worker kept in the artifact store: per-class precision, recall and F1 and the confusion
    matrix (or RMSE, MAE and residuals), and the highest-loss examples, with PNG plots beside
    the document. Reads the study database and the artifact store directly. Prints the
    document's path and a summary. Only trials run by the built-in trainer with a store, and
    among the best kept (--keep-artifacts on the workers), have a report.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--trial", type=int, help="trial number (default: the study's best trial)"
        )
        parser.add_argument(
            "--out", help="folder to write into (default: ./hpsearch-report-STUDY-trialN)"
        )
        parser.add_argument(
            "--format", choices=["html", "md"], default="html", help="html (default) or md"
        )

    def run(self, args: argparse.Namespace) -> int:
        from hpsearch.analysis.artifacts import open_artifact_store
        from hpsearch.analysis.report import default_report_dir, study_report, write_report
        from hpsearch.db.storage import open_storage, redact

        source = database_source(args.storage)
        storage = open_storage(source.url, create=False)  # a missing file: one line of its own
        print(f"reading {redact(source.url)} ({source.why})", file=sys.stderr, flush=True)
        store = open_artifact_store(args.artifacts, storage_url=args.storage)
        report, preds = study_report(storage, store, args.name, args.trial)
        assert report.trial is not None  # study_report names the trial it read
        out = args.out or default_report_dir(args.name, report.trial)  # never the raw name
        document = write_report(report, preds, out, fmt=args.format)
        print(document)
        print("\n".join(report.headline()))
        return 0
