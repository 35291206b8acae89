"""Build the MLP grid: real learning curves of an MLP over a grid of five hyperparameters.

A tabular benchmark in the manner of HPOBench's MLP tables, trained here on data that ships with
scikit-learn or that the code makes, so it needs no download: every config of the grid below
is trained for ``EPOCHS`` epochs of Adam on each of eight classification datasets, and its
validation log loss and error after every epoch are kept. ``search_quality.py --suite mlp``
searches the final epoch; ``multi_fidelity.py`` searches with epochs as the resource.

The five knobs and their checklist rows: learning rate (high), layer width (high), depth
(medium), L2 penalty ``alpha`` (medium, the weight-decay row), batch size (low). Configs that
share a width, depth and batch size are trained side by side as one batched model (one weight
tensor per layer with a leading config axis), so the whole table takes minutes on one core.

    python benchmarks/mlp_grid.py                 # writes benchmarks/data/mlp_grid.npz
    python benchmarks/mlp_grid.py --datasets wine --epochs 3   # a quick look
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).parent / "data" / "mlp_grid.npz"
EPOCHS = 27  # 1, 3, 9, 27: Hyperband's rungs at reduction factor 3
#: The grid, in the order of the table's axes.
GRID: dict[str, list[float]] = {
    "lr": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
    "alpha": [1e-8, 1e-6, 1e-4, 1e-2, 1.0],
    "width": [16, 48, 128],
    "depth": [1, 2, 3],
    "batch_size": [32, 128, 512],
}
LOSS_CAP = 10.0  # the log loss a diverged config scores
MAX_TRAIN = 800  # training rows per dataset, at most


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Eight classification datasets: two of scikit-learn's bundled ones, six made."""
    from sklearn import datasets as ds

    def made(fn: str, seed: int, n_noise: int = 0, **kw: object) -> tuple[np.ndarray, np.ndarray]:
        x, y = getattr(ds, fn)(random_state=seed, **kw)
        if n_noise:
            rng = np.random.default_rng(seed)
            x = np.hstack([x, rng.normal(size=(len(x), n_noise))])
        return x, y

    return {
        "digits": ds.load_digits(return_X_y=True),
        "breast_cancer": ds.load_breast_cancer(return_X_y=True),
        "noisy_labels": made(
            "make_classification",
            6,
            n_samples=1500,
            n_features=15,
            n_informative=6,
            n_classes=3,
            flip_y=0.2,
        ),
        "informative5": made(
            "make_classification",
            1,
            n_samples=1500,
            n_features=20,
            n_informative=5,
            flip_y=0.05,
        ),
        "multiclass8": made(
            "make_classification",
            2,
            n_samples=1500,
            n_features=30,
            n_informative=12,
            n_classes=8,
            n_clusters_per_class=1,
            class_sep=1.5,
        ),
        "moons_noise": made("make_moons", 3, n_noise=10, n_samples=1500, noise=0.3),
        "circles": made("make_circles", 4, n_noise=2, n_samples=1500, noise=0.1, factor=0.5),
        "hastie": made("make_hastie_10_2", 5, n_samples=1500),
    }


def _split(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_val = max(len(x) // 4, 30)
    val, train = order[:n_val], order[n_val:][:MAX_TRAIN]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    y = np.unique(y, return_inverse=True)[1]

    def f(a: np.ndarray) -> torch.Tensor:
        return torch.tensor((a - mean) / std, dtype=torch.float32)

    return f(x[train]), torch.tensor(y[train]), f(x[val]), torch.tensor(y[val])


def train_group(
    data: tuple[torch.Tensor, ...],
    *,
    width: int,
    depth: int,
    batch_size: int,
    epochs: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Train every (lr, alpha) pair of the grid for one width, depth and batch size.

    Returns the validation log loss and error, each of shape (len(lr), len(alpha), epochs).
    """
    xtr, ytr, xva, yva = data
    lrs = torch.tensor(GRID["lr"]).repeat_interleave(len(GRID["alpha"]))
    alphas = torch.tensor(GRID["alpha"]).repeat(len(GRID["lr"]))
    g = len(lrs)
    n_classes = int(ytr.max()) + 1
    sizes = [xtr.shape[1], *([width] * depth), n_classes]
    gen = torch.Generator().manual_seed(seed)
    # Each weight is lr * q, and Adam (at lr 1) updates q: Adam's step does not depend on the
    # gradient's scale, so each config moves at its own learning rate, and one fused Adam
    # steps all of them.
    lr3 = lrs.view(g, 1, 1)
    qs: list[torch.Tensor] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot, as scikit-learn's MLP
        w = (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound
        b = (torch.rand(1, fan_out, generator=gen) * 2 - 1) * bound
        qs += [w.expand(g, -1, -1) / lr3, b.expand(g, -1, -1) / lr3]
    for q in qs:
        q.requires_grad_(True)
    opt = torch.optim.Adam(qs, lr=1.0, foreach=True)

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.expand(g, -1, -1)
        l2 = torch.zeros(g)
        for i in range(0, len(qs), 2):
            w = qs[i] * lr3
            l2 = l2 + (w**2).sum((1, 2))
            h = torch.baddbmm(qs[i + 1] * lr3, h, w)
            if i + 2 < len(qs):
                h = torch.relu(h)
        return h, l2

    losses = np.empty((g, epochs), dtype=np.float32)
    errors = np.empty((g, epochs), dtype=np.float32)
    n = len(xtr)
    for _epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            out, l2 = forward(xtr[idx])
            ce = (
                torch.nn.functional.cross_entropy(
                    out.reshape(-1, n_classes), ytr[idx].repeat(g), reduction="none"
                )
                .view(g, -1)
                .mean(1)
            )
            loss = (ce + 0.5 * alphas * l2 / len(idx)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for q in qs:  # a diverged config must not poison Adam's state
                torch.nan_to_num_(q.grad, nan=0.0, posinf=0.0, neginf=0.0)
            opt.step()
        with torch.no_grad():
            out, _ = forward(xva)
            ce = (
                torch.nn.functional.cross_entropy(
                    out.reshape(-1, n_classes), yva.repeat(g), reduction="none"
                )
                .view(g, -1)
                .mean(1)
            )
            err = (out.argmax(-1) != yva).float().mean(1)
        ce = torch.nan_to_num(ce, nan=LOSS_CAP, posinf=LOSS_CAP).clamp(max=LOSS_CAP)
        losses[:, _epoch] = ce.numpy()
        errors[:, _epoch] = err.numpy()
    shape = (len(GRID["lr"]), len(GRID["alpha"]), epochs)
    return losses.reshape(shape), errors.reshape(shape)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", help="comma-separated names (default: all eight)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    every = datasets()
    names = args.datasets.split(",") if args.datasets else list(every)
    unknown = [n for n in names if n not in every]
    if unknown:
        print(f"unknown dataset(s) {unknown}; choose from {', '.join(every)}", file=sys.stderr)
        return 2
    axes = [len(v) for v in GRID.values()]
    loss = np.empty((len(names), *axes, args.epochs), dtype=np.float32)
    error = np.empty_like(loss)
    groups = list(
        itertools.product(
            enumerate(GRID["width"]), enumerate(GRID["depth"]), enumerate(GRID["batch_size"])
        )
    )
    t0 = time.perf_counter()
    for d, name in enumerate(names):
        data = _split(*every[name], seed=d)
        for (wi, w), (di, dep), (bi, bs) in groups:
            lo, er = train_group(
                data,
                width=int(w),
                depth=int(dep),
                batch_size=int(bs),
                epochs=args.epochs,
                seed=1000 * d + 100 * wi + 10 * di + bi,
            )
            loss[d, :, :, wi, di, bi, :] = lo
            error[d, :, :, wi, di, bi, :] = er
        best = float(loss[d, ..., -1].min())
        print(
            f"{name:>14}: {len(data[0])} train / {len(data[2])} val rows, best final log loss "
            f"{best:.4f}, {time.perf_counter() - t0:.0f} s so far",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        loss=loss.astype(np.float16),
        error=error.astype(np.float16),
        datasets=np.array(names),
        **{f"grid_{k}": np.array(v) for k, v in GRID.items()},
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
