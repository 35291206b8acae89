"""Latency of the REST reads a user makes, at 1,000 to 100,000 trials in one study (BENCHMARKS.md §2).

    python benchmarks/read_latency.py [--sizes 1000,10000,100000] [--repeat 30]
                                      [--postgres postgresql://...] [--out FILE.md]

For each backend (a fresh SQLite file; PostgreSQL too when ``--postgres URL`` names an empty
database) and each size, a study of the demo space is created with ``hpsearch.studies`` and
filled FAST by ``fill.build_study``, which bulk-inserts rows into Optuna's own tables with
SQLAlchemy Core (80% complete, 15% pruned, 5% failed; every active parameter of the demo
space, 10 intermediate values per complete trial, a ``config`` and a ``seed`` user attribute). Optuna then reads the first
trials back, to check the rows are what Optuna would have written.

The reads go through the real app served by uvicorn in a subprocess over real HTTP (httpx,
with a read token made in the database): the study summary, the best trial, the first page of
trials, a page in the middle, the list of studies, parameter importance (PED-ANOVA). Beside
them the "plain Optuna" anchor answers the same questions the usual way, in-process on the same
storage: ``optuna.load_study(...).best_trial`` and ``len(optuna.load_study(...).trials)``.

Each read is repeated ``--repeat`` times after 2 warm-ups, but stops early (at 5 samples at
least) once it has taken ``--budget`` seconds: the column ``n`` says how many samples a row has.
Studies of every size share one database per backend, built smallest first, so the list of
studies at size N also holds the smaller studies.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fill import build_study

from hpsearch.db.storage import open_storage, redact


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """The real app, served by uvicorn in a subprocess over ``url``."""

    def __init__(self, url: str) -> None:
        self.port = _free_port()
        env = {**os.environ, "HPSEARCH_STORAGE": url, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "hpsearch.service.app:create_app", "--factory"]
            + ["--port", str(self.port), "--log-level", "warning"],
            env=env,
            cwd=ROOT,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def _read_headers(url: str) -> dict[str, str]:
    try:
        from hpsearch.db.tokens import create_token
    except ImportError:  # no tokens yet: the service reads anonymously
        return {}
    _info, secret = create_token(
        open_storage(url), f"bench-{os.getpid()}-{time.time_ns()}", scopes="read"
    )
    return {"Authorization": f"Bearer {secret}"}


def measure(
    call: Callable[[], Any], *, repeat: int, budget: float, min_samples: int = 5, warmup: int = 2
) -> list[float]:
    """Milliseconds of ``repeat`` calls after ``warmup`` ones (one when a call takes over a
    fifth of ``budget``); stops at ``min_samples`` or more once over ``budget`` seconds."""
    for _ in range(warmup):
        start = time.perf_counter()
        call()
        if time.perf_counter() - start > budget / 5:
            break
    samples: list[float] = []
    began = time.perf_counter()
    while len(samples) < repeat:
        start = time.perf_counter()
        call()
        samples.append(1000 * (time.perf_counter() - start))
        if len(samples) >= min_samples and time.perf_counter() - began > budget:
            break
    return samples


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def run_backend(
    label: str, url: str, sizes: list[int], *, repeat: int, budget: float, min_samples: int
) -> list[tuple[str, str, int, int, float, float]]:
    """Rows ``(backend, read, size, n, p50 ms, p95 ms)`` for one database."""
    print(f"\n## {label}: {redact(url)}", flush=True)
    storage = open_storage(url)
    service = Service(url)
    headers = _read_headers(url)
    rows = []
    try:
        with httpx.Client(base_url=service.base, headers=headers, timeout=600) as http:

            def get(path: str, **params: Any) -> Callable[[], Any]:
                def call() -> Any:
                    response = http.get(path, params=params)
                    response.raise_for_status()
                    return response

                return call

            for size in sizes:
                name = f"bench-{size}"
                seconds = build_study(url, name, size)
                print(f"built {name}: {size} trials in {seconds:.1f} s", flush=True)

                def best_plain(name: str = name) -> Any:
                    return optuna.load_study(study_name=name, storage=storage).best_trial

                def count_plain(name: str = name) -> Any:
                    return len(optuna.load_study(study_name=name, storage=storage).trials)

                reads = [
                    ("GET /studies/{name} (summary)", get(f"/studies/{name}")),
                    ("GET /studies/{name}/best", get(f"/studies/{name}/best")),
                    (
                        "GET /studies/{name}/trials?limit=50",
                        get(f"/studies/{name}/trials", limit=50),
                    ),
                    (
                        "GET /studies/{name}/trials?offset=middle&limit=50",
                        get(f"/studies/{name}/trials", offset=size // 2, limit=50),
                    ),
                    ("GET /studies (list)", get("/studies")),
                    ("GET /studies/{name}/importance", get(f"/studies/{name}/importance")),
                    ("plain Optuna: load_study().best_trial", best_plain),
                    ("plain Optuna: len(load_study().trials)", count_plain),
                ]
                for read, call in reads:
                    samples = measure(call, repeat=repeat, budget=budget, min_samples=min_samples)
                    row = (
                        label,
                        read,
                        size,
                        len(samples),
                        statistics.median(samples),
                        _p95(samples),
                    )
                    rows.append(row)
                    print(f"  {read:<52} n={row[3]:>3}  p50 {row[4]:9.1f} ms  p95 {row[5]:9.1f} ms",
                          flush=True)  # fmt: skip
    finally:
        service.stop()
    return rows


def table(rows: list[tuple[str, str, int, int, float, float]]) -> str:
    """The markdown table: rows are read x size (by backend), columns p50 and p95 in ms."""
    lines = [
        "| backend | read | trials | n | p50 ms | p95 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    order = {read: i for i, read in enumerate(dict.fromkeys(r[1] for r in rows))}
    for backend, read, size, n, p50, p95 in sorted(rows, key=lambda r: (r[0], order[r[1]], r[2])):
        lines.append(f"| {backend} | {read} | {size:,} | {n} | {p50:.1f} | {p95:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="trials per study, comma-separated")
    parser.add_argument("--repeat", type=int, default=30, help="requests per read (default 30)")
    parser.add_argument(
        "--budget", type=float, default=60.0,
        help="seconds per read and size after which it stops at --min-samples (default 60)",
    )  # fmt: skip
    parser.add_argument(
        "--min-samples", type=int, default=5, help="samples per read at least (default 5)"
    )
    parser.add_argument("--postgres", metavar="URL", help="also run on this EMPTY PostgreSQL db")
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "read_latency.md"),
        help="markdown file for the table",
    )  # fmt: skip
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{tmp}/bench.db"
        rows += run_backend(
            "sqlite", sqlite_url, sizes, repeat=args.repeat, budget=args.budget,
            min_samples=args.min_samples,
        )  # fmt: skip
    if args.postgres:
        rows += run_backend(
            "postgresql", args.postgres, sizes, repeat=args.repeat, budget=args.budget,
            min_samples=args.min_samples,
        )  # fmt: skip
    result = table(rows)
    print("\n" + result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Read latency (benchmarks/read_latency.py)\n\n"
        f"`python benchmarks/read_latency.py --sizes {args.sizes} --repeat {args.repeat} "
        f"--budget {args.budget:g} --min-samples {args.min_samples}"
        f"{' --postgres URL' if args.postgres else ''}`, "
        f"{dt.datetime.now():%Y-%m-%d}. Milliseconds per request, client side; n = samples.\n\n"
    )
    out.write_text(header + result + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
