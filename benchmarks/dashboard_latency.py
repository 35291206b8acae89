"""optuna-dashboard's study endpoint over the plain storage and over hpsearch's trial cache.

    python benchmarks/dashboard_latency.py [--sizes 1000,10000,100000] [--postgres URL]
                                           [--polls 5] [--slow-polls 2] [--out FILE.md]

For each backend (a fresh SQLite file; PostgreSQL too when ``--postgres URL`` names an empty
database) and each size, a study of the demo space is filled by ``fill.build_study`` (bulk
INSERT, all trials finished). Then two dashboard servers run as subprocesses over the same
database, the way users start them:

- plain: ``optuna-dashboard URL --server wsgiref`` (Optuna's RDB storage),
- hpsearch: ``hpsearch dashboard --storage URL`` (the same app over ``CachedStorage``, with
  its study view, ``hpsearch.service.dashboard_detail``), reads open without a token
  (``HPSEARCH_ANONYMOUS_READS=1``) as plain's are.

Both are timed over real HTTP on ``GET /api/studies/<study_id>``, as the browser asks it, one
request at a time (never both servers at once):

- first load: the first request once the server answers (``after=0``), and how many trials
  it held; then, as the page does while it lacks trials, one poll a reload interval later
  (the TTL below, which is also the page's interval) for the trials after those it has
  (``?after=N``), until it has all: "all trials shown after" is the time from the first
  request to the last of those answers. plain answers everything at once; hpsearch answers
  within about 2 s with the first trials and the rest over the next polls;
- steady polls: the dashboard keeps its own copy of the trials for a TTL (10 s once a study has
  500 trials or more), so polls are spaced by TTL + 0.5 s and each one reads the storage. Two
  forms: the browser's (``?after=N``, N = the leading finished trials it already has: all of
  them here, so the answer holds no trial) and the full one (``after=0``). A server whose first
  load took over ``--slow-s`` seconds gets ``--slow-polls`` polls instead of ``--polls``;
  column n says how many;
- after +100: 100 finished trials are appended (``fill.add_trials``), the TTL passes, and the
  browser's poll (``after=N``) must bring exactly those 100;
- RSS (VmRSS of the server process) after the first load and at the end.

The two servers must answer the same trials (numbers and states) to the whole first load and to
the poll after +100; the script stops if they do not. In-process, in fresh subprocesses: a cold
``RDBStorage.get_all_trials`` beside a cold ``CachedStorage.get_all_trials`` (and a warm one,
with nothing changed), the RSS the cache grew by, and (up to ``--trace-max`` trials)
tracemalloc's count of the cache's memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fill import add_trials, build_study

from hpsearch.db.storage import open_storage, redact

BIN = Path(sys.executable).parent
ADDED = 100


def _ttl(n_trials: int) -> float:
    # optuna_dashboard/_storage.py: how long the app answers from its own copy of the trials.
    return 2.0 if n_trials < 100 else 5.0 if n_trials < 500 else 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Dashboard:
    """A dashboard server subprocess, and what was measured on it."""

    label: str
    argv: list[str]
    log: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen | None = None
    ready_at: float = 0.0  # monotonic time when the app's own copy of the trials has expired
    first_s: float = 0.0  # the first answer
    first_n: int = 0  # the trials in it
    whole_s: float = 0.0  # until the page has every trial (answers, and the page's waits)
    answers: int = 0
    full_mb: float = 0.0
    rss_first: float = 0.0
    rss_end: float = 0.0
    incremental: list[float] = field(default_factory=list)
    full: list[float] = field(default_factory=list)
    after_add_s: float = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.argv, "--port", str(self.port)],
                cwd=ROOT,
                # Reads without a token, as plain optuna-dashboard serves them.
                env={**os.environ, "PYTHONPATH": str(ROOT), "HPSEARCH_ANONYMOUS_READS": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.base}/api/meta", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.label} dashboard did not start: see {self.log}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss(self) -> float:
        assert self.proc is not None
        return _rss_mb(self.proc.pid)

    def load_page(
        self, http: httpx.Client, study_id: int, size: int, *, ttl: float
    ) -> list[tuple[int, str]]:
        """What the page does when it opens the study: the first answer, then (while it lacks
        trials) one poll a reload interval later for the trials after those it has, until it
        has them all. Returns the trials it ends with."""
        start = time.perf_counter()
        have: list[tuple[int, str]] = []
        while True:
            seconds, answer = self.get(http, study_id, after=len(have), ttl=ttl)
            have += _trial_keys(answer)
            del answer
            self.answers += 1
            if self.answers == 1:
                self.first_s, self.first_n = seconds, len(have)
            if len(have) >= size or self.answers > 1000:
                self.whole_s = time.perf_counter() - start
                return have

    def get(
        self, http: httpx.Client, study_id: int, *, after: int, ttl: float
    ) -> tuple[float, Any]:
        """Seconds of one poll once the TTL has passed, and the JSON answer."""
        time.sleep(max(0.0, self.ready_at - time.monotonic()))
        start = time.perf_counter()
        response = http.get(f"{self.base}/api/studies/{study_id}", params={"after": after})
        seconds = time.perf_counter() - start
        self.ready_at = time.monotonic() + ttl + 0.5
        response.raise_for_status()
        self.full_mb = max(self.full_mb, len(response.content) / 2**20)
        return seconds, response.json()


def _trial_keys(answer: dict[str, Any]) -> list[tuple[int, str]]:
    return [(t["number"], t["state"]) for t in answer["trials"]]


def _same(what: str, answers: dict[str, list[tuple[int, str]]]) -> None:
    plain, cached = answers["plain"], answers["hpsearch"]
    if plain != cached:
        raise AssertionError(
            f"{what}: the servers disagree: plain {len(plain)} trials, hpsearch {len(cached)}; "
            f"first difference at {next(i for i, (a, b) in enumerate(zip(plain, cached)) if a != b)}"
            if len(plain) == len(cached)
            else f"{what}: plain answered {len(plain)} trials, hpsearch {len(cached)}"
        )


def run_size(
    label: str, url: str, size: int, tmp: Path, *, polls: int, slow_polls: int, slow_s: float
) -> list[Dashboard]:
    """Both servers over a new study of ``size`` trials; returns them with their numbers."""
    name = f"dash-{size}"
    seconds = build_study(url, name, size)
    study_id = open_storage(url).get_study_id_from_name(name)
    print(f"built {name} (id {study_id}): {size} trials in {seconds:.1f} s", flush=True)
    servers = [
        Dashboard(
            "plain",
            [str(BIN / "optuna-dashboard"), url, "--server", "wsgiref", "--quiet"],
            tmp / f"plain-{label}-{size}.log",
        ),
        Dashboard(
            "hpsearch",
            [str(BIN / "hpsearch"), "dashboard", "--storage", url],
            tmp / f"hpsearch-{label}-{size}.log",
        ),
    ]
    ttl = _ttl(size)
    try:
        for server in servers:
            server.start()
        with httpx.Client(timeout=1800) as http:
            first: dict[str, list[tuple[int, str]]] = {}
            for server in servers:
                first[server.label] = server.load_page(http, study_id, size, ttl=ttl)
                server.rss_first = server.rss()
                print(
                    f"  {server.label:<8} first load {server.first_s:8.2f} s "
                    f"({server.first_n} trials), all {size} trials shown after "
                    f"{server.whole_s:.2f} s ({server.answers} answers), "
                    f"{server.full_mb:.1f} MB, RSS {server.rss_first:.0f} MB",
                    flush=True,
                )
            _same("first load", first)
            assert len(first["plain"]) == size, len(first["plain"])
            del first
            n_polls = {s.label: slow_polls if s.first_s > slow_s else polls for s in servers}
            for i in range(max(n_polls.values())):
                for form, after in (("incremental", size), ("full", 0)):
                    for server in servers:
                        if i >= n_polls[server.label]:
                            continue
                        seconds, answer = server.get(http, study_id, after=after, ttl=ttl)
                        expected = 0 if after else size
                        assert len(answer["trials"]) == expected, (server.label, form)
                        del answer
                        getattr(server, form).append(seconds)
                        print(f"  {server.label:<8} {form:<11} poll {seconds:8.3f} s", flush=True)
            added = add_trials(url, name, ADDED, seed=size + 1)
            print(f"  added {ADDED} trials in {added:.2f} s", flush=True)
            after_add: dict[str, list[tuple[int, str]]] = {}
            for server in servers:
                server.after_add_s, answer = server.get(http, study_id, after=size, ttl=ttl)
                after_add[server.label] = _trial_keys(answer)
                server.rss_end = server.rss()
                print(
                    f"  {server.label:<8} after +{ADDED} {server.after_add_s:8.3f} s, "
                    f"RSS {server.rss_end:.0f} MB",
                    flush=True,
                )
            _same(f"after +{ADDED}", after_add)
            numbers = [n for n, _ in after_add["plain"]]
            assert numbers == list(range(size, size + ADDED)), numbers[:5]
    finally:
        for server in servers:
            server.stop()
    return servers


def inprocess(mode: str, url: str, name: str) -> dict[str, Any]:
    """One cold read of the whole study in this (fresh) process: ``rdb``, ``cache``, ``traced``."""
    import tracemalloc

    from hpsearch.db.cache import CachedStorage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    backend = open_storage(url)
    study_id = backend.get_study_id_from_name(name)
    storage = backend if mode == "rdb" else CachedStorage(backend)
    # One trial through Optuna's ORM first: imports and mapper set-up are not the trials' memory.
    backend.get_trial(backend.get_trial_id_from_study_id_trial_number(study_id, 0))
    gc.collect()
    rss0 = _rss_mb(os.getpid())
    if mode == "traced":
        tracemalloc.start()
    start = time.perf_counter()
    trials = storage.get_all_trials(study_id, deepcopy=False)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"n": len(trials), "seconds": seconds}
    if mode == "traced":
        result["traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
        return result
    gc.collect()
    result["rss_growth_mb"] = _rss_mb(os.getpid()) - rss0
    if mode == "cache":
        warm = []
        for _ in range(5):
            start = time.perf_counter()
            storage.get_all_trials(study_id, deepcopy=False)
            warm.append(time.perf_counter() - start)
        result["warm_ms"] = 1000 * statistics.median(warm)
        result["cached_trials"] = storage.cache_info().trials
    return result


def _inprocess_child(mode: str, url: str, name: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--inprocess", mode, url, name],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _polls(samples: list[float]) -> str:
    if not samples:
        return "–"
    return f"{_fmt_s(statistics.median(samples))} / {_fmt_s(_p(samples, 0.95))} (n={len(samples)})"


def server_table(rows: list[tuple[str, int, Dashboard]]) -> str:
    """Seconds per request and RSS per backend, size and server."""
    lines = [
        (
            "| backend | trials | server | first load s (trials shown) "
            "| all trials shown after s (answers) | steady poll `?after=N` s p50 / p95 "
            f"| steady poll `?after=0` s p50 / p95 | poll after +{ADDED} trials s "
            "| full answer MB | RSS after first load MB | RSS at end MB |"
        ),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, size, s in rows:
        lines.append(
            f"| {backend} | {size:,} | {s.label} | {_fmt_s(s.first_s)} ({s.first_n:,}) "
            f"| {_fmt_s(s.whole_s)} ({s.answers}) | {_polls(s.incremental)} "
            f"| {_polls(s.full)} | {_fmt_s(s.after_add_s)} | {s.full_mb:.1f} "
            f"| {s.rss_first:,.0f} | {s.rss_end:,.0f} |"
        )
    return "\n".join(lines)


def inprocess_table(rows: list[tuple[str, int, dict[str, dict[str, Any]]]]) -> str:
    """Cold whole-study reads in-process, and the cache's memory."""
    lines = [
        (
            "| backend | trials read | `RDBStorage.get_all_trials` s | `CachedStorage` cold s "
            "| `CachedStorage` warm (no change) ms | RSS growth, RDB list MB "
            "| RSS growth, cache MB (per 1k trials) | tracemalloc, cache MB (per 1k trials) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, size, r in rows:
        rdb, cache, traced = r["rdb"], r["cache"], r.get("traced")
        per_k = 1000 / cache["n"]  # the study holds the 100 added trials too
        traced_cell = (
            f"{traced['traced_mb']:.1f} ({traced['traced_mb'] * per_k:.2f})" if traced else "–"
        )
        lines.append(
            f"| {backend} | {cache['n']:,} | {_fmt_s(rdb['seconds'])} | {_fmt_s(cache['seconds'])} "
            f"| {cache['warm_ms']:.1f} | {rdb['rss_growth_mb']:.0f} "
            f"| {cache['rss_growth_mb']:.0f} ({cache['rss_growth_mb'] * per_k:.2f}) "
            f"| {traced_cell} |"
        )
    return "\n".join(lines)


def run_backend(
    label: str, url: str, sizes: list[int], tmp: Path, args: argparse.Namespace
) -> tuple[list[tuple[str, int, Dashboard]], list[tuple[str, int, dict[str, dict[str, Any]]]]]:
    """Both tables' rows for one database."""
    print(f"\n## {label}: {redact(url)}", flush=True)
    served, measured = [], []
    for size in sizes:
        servers = run_size(
            label,
            url,
            size,
            tmp,
            polls=args.polls,
            slow_polls=args.slow_polls,
            slow_s=args.slow_s,
        )
        served += [(label, size, s) for s in servers]
        name = f"dash-{size}"
        modes = ["rdb", "cache"] + (["traced"] if size <= args.trace_max else [])
        results = {}
        for mode in modes:
            results[mode] = _inprocess_child(mode, url, name)
            print(f"  in-process {mode:<6} {json.dumps(results[mode])}", flush=True)
        measured.append((label, size, results))
    return served, measured


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="trials per study")
    parser.add_argument("--postgres", metavar="URL", help="also run on this EMPTY PostgreSQL db")
    parser.add_argument("--no-sqlite", action="store_true", help="only the --postgres database")
    parser.add_argument("--polls", type=int, default=5, help="steady polls per form (default 5)")
    parser.add_argument(
        "--slow-polls", type=int, default=2,
        help="steady polls per form for a server whose first load took over --slow-s (default 2)",
    )  # fmt: skip
    parser.add_argument("--slow-s", type=float, default=20.0, help="see --slow-polls (20)")
    parser.add_argument(
        "--trace-max", type=int, default=10_000,
        help="largest study whose cache is also measured under tracemalloc (default 10000)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "dashboard_latency.md"),
        help="markdown file for the tables",
    )  # fmt: skip
    parser.add_argument("--inprocess", nargs=3, metavar=("MODE", "URL", "NAME"), help="internal")
    args = parser.parse_args(argv)
    if args.inprocess:
        print(json.dumps(inprocess(*args.inprocess)))
        return
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.monotonic()
    served: list[tuple[str, int, Dashboard]] = []
    measured: list[tuple[str, int, dict[str, dict[str, Any]]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        backends = [] if args.no_sqlite else [("sqlite", f"sqlite:///{tmp}/bench.db")]
        if args.postgres:
            backends.append(("postgresql", args.postgres))
        for label, url in backends:
            s, m = run_backend(label, url, sizes, Path(tmp), args)
            served += s
            measured += m
    result = (
        "## The study endpoint over HTTP, seconds per request\n\n"
        + server_table(served)
        + "\n\n## Whole-study reads in-process, and the cache's memory\n\n"
        + inprocess_table(measured)
    )
    print("\n" + result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Dashboard latency (benchmarks/dashboard_latency.py)\n\n"
        f"`python benchmarks/dashboard_latency.py --sizes {args.sizes} --polls {args.polls} "
        f"--slow-polls {args.slow_polls}{' --postgres URL' if args.postgres else ''}"
        f"{' --no-sqlite' if args.no_sqlite else ''}`, "
        f"{dt.datetime.now():%Y-%m-%d}, {(time.monotonic() - started) / 60:.0f} minutes. "
        f"Client-side seconds per `GET /api/studies/<id>`; n = polls. Both servers answered "
        f"the same trials (numbers and states) to the first load and to the poll after "
        f"+{ADDED} trials.\n\n"
    )
    out.write_text(header + result + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
