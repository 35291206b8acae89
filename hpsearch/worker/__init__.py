"""Workers: processes that pull trials from the shared study database and run them."""

from __future__ import annotations

from hpsearch.worker.loop import WorkerStopped, run_worker
from hpsearch.worker.objective import Objective, Report, load_objective

__all__ = ["Objective", "Report", "WorkerStopped", "load_objective", "run_worker"]
