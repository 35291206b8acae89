"""Objectives that record which GPU their worker process was pinned to, for the tests of
``hpsearch worker --per-gpu`` (``--objective gpu_objectives:NAME``)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def pinned_together(config: dict, report) -> float:
    """Write ``pid CUDA_VISIBLE_DEVICES`` to $HPSEARCH_TEST_TRACE/<pid>, then wait until
    $HPSEARCH_TEST_WORKERS processes have (at most 60 s): the trials run at once, one each."""
    trace = Path(os.environ["HPSEARCH_TEST_TRACE"])
    expected = int(os.environ["HPSEARCH_TEST_WORKERS"])
    (trace / str(os.getpid())).write_text(f"{os.getpid()} {os.environ['CUDA_VISIBLE_DEVICES']}")
    deadline = time.monotonic() + 60
    while len(list(trace.iterdir())) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return float(config["optim.lr"])
