"""One worker process per GPU (or ``--per-gpu N`` per GPU), each seeing only its own GPU; one
CPU worker without GPUs."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

from hpsearch.errors import UsageError
from hpsearch.worker.loop import run_worker

__all__ = ["MAX_PER_GPU", "parse_gpus", "run_workers"]

log = logging.getLogger("hpsearch.worker")


def _no_gpu_driver() -> bool:
    # Importing torch takes seconds (and hundreds of MB): skip it where no GPU driver is
    # installed, so that a CPU worker of your own function (--objective) never loads torch.
    return sys.platform == "darwin" or (
        sys.platform.startswith("linux") and not any(os.path.exists(d) for d in _GPU_DEVICES)
    )


def _visible_gpu_count() -> int:
    if _no_gpu_driver():
        return 0
    import torch

    return torch.cuda.device_count()


#: The most worker processes ``--per-gpu`` starts on one GPU.
MAX_PER_GPU = 64

#: Device files of the GPU drivers torch.cuda uses (NVIDIA's, and AMD's for ROCm builds).
_GPU_DEVICES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")


def parse_gpus(value: str) -> list[str]:
    """GPU indices from ``--gpus``: ``auto``/``all`` → every visible GPU, ``none`` → ``[]``."""
    value = value.strip().lower()
    if value == "none":
        return []
    if value in ("auto", "all"):
        count = _visible_gpu_count()
        if value == "all" and count == 0:
            raise UsageError("--gpus all: no CUDA GPU is visible; use --gpus none for a CPU worker")
        return [str(i) for i in range(count)]
    indices = [part.strip() for part in value.split(",") if part.strip()]
    if not indices or not all(i.isdigit() for i in indices):
        raise UsageError(f"--gpus takes auto, all, none or indices like 0,1; got {value!r}")
    return indices


def _physical(index: str) -> str:
    # "--gpus 1" means the second GPU this process can see, whatever CUDA_VISIBLE_DEVICES says.
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if not visible:
        return index
    if int(index) >= len(visible):
        raise UsageError(
            f"--gpus {index}: only {len(visible)} GPU(s) are visible ({','.join(visible)})"
        )
    return visible[int(index)]


def run_workers(
    storage_url: str | None,
    *,
    gpus: str = "auto",
    study: str | None = None,
    objective: str | None = None,
    wait: bool = False,
    threads: int | None = None,
    max_trials: int | None = None,
    checkpoint_dir: str | None = None,
    artifacts: str | None = None,
    keep_artifacts: str | None = None,
    data_roots: list[str] | None = None,
    per_gpu: int = 1,
) -> int:
    """Run workers for ``--gpus``: in this process for zero or one GPU, else one child per GPU.

    With ``per_gpu`` N above 1, N children per GPU, each pinned to it (CUDA_VISIBLE_DEVICES),
    so that several small trials share a big GPU. It needs a GPU: with none (``--gpus none``,
    or ``auto`` on a machine without one) it is a :class:`UsageError`, not N CPU workers
    (those would only contend for the same cores). Returns the exit status.
    """
    if not 1 <= per_gpu <= MAX_PER_GPU:
        raise UsageError(f"--per-gpu takes a number from 1 to {MAX_PER_GPU}; got {per_gpu}")
    indices = parse_gpus(gpus)
    if per_gpu > 1 and not indices:
        raise UsageError(
            f"--per-gpu {per_gpu} shares GPUs, but --gpus {gpus} gives none (no CUDA GPU is "
            "visible, or 'none'); drop --per-gpu for one CPU worker"
        )
    if len(indices) * per_gpu > 1:
        return _spawn_per_gpu(indices, per_gpu=per_gpu)
    device, gpu_name, gpu = "cpu", None, None
    if indices:
        gpu = _physical(indices[0])
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        device = "cuda"
        gpu_name = _gpu_name()
    if threads:
        import torch

        torch.set_num_threads(threads)
    run_worker(
        storage_url,
        study=study,
        objective=objective,
        device=device,
        wait=wait,
        max_trials=max_trials,
        checkpoint_dir=checkpoint_dir,
        gpu_name=gpu_name,
        artifacts=artifacts,
        keep_artifacts=keep_artifacts,
        data_roots=data_roots,
        gpu=gpu,
    )
    return 0


def _gpu_name() -> str | None:
    if _no_gpu_driver():
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _spawn_per_gpu(gpus: list[str], *, per_gpu: int = 1) -> int:
    argv = sys.argv[1:]
    # Replace --gpus X (or --gpus=X) with each child's single GPU.
    base: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--gpus":
            skip = True
            continue
        if arg.startswith("--gpus="):
            continue
        base.append(arg)
    children = []
    for gpu in gpus:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": _physical(gpu)}
        # The last --per-gpu wins in argparse: each child is one worker on its one GPU.
        cmd = [sys.executable, "-m", "hpsearch", *base, "--gpus", "0", "--per-gpu", "1"]
        for slot in range(per_gpu):
            children.append(subprocess.Popen(cmd, env=env))
            log.info(
                "started worker pid %d on GPU %s (%d of %d)",
                children[-1].pid, env["CUDA_VISIBLE_DEVICES"], slot + 1, per_gpu,
            )  # fmt: skip

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)
