"""`hpsearch try` and `lr-find` fit the machine and the data: no weights means no pretrained
configs, CPU-sized image defaults, `--target` with the column in use said, and verbs that do
not train never load torch or timm."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hpsearch.errors import UsageError
from hpsearch.spaces import load_space
from hpsearch.families import TaskSpec
from hpsearch.cli.tryout import configs_to_try, describe_target, device_defaults, pin_pretrained

HPSEARCH = [sys.executable, "-c", "import sys; from hpsearch.cli import main; sys.exit(main())"]
# One torch thread: the models are tiny, and the cores are shared.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HPSEARCH_CPU_AMP": "0"}


def _run(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*HPSEARCH, *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _image_folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, shade in (("dark", 40), ("light", 210)):
        (root / label).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(rng.normal(shade, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def _label_first_csv(path: Path) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["digit", *[f"p{i}" for i in range(64)]])
        for x, y in zip(digits.data[:300], digits.target[:300], strict=True):
            writer.writerow([int(y), *[int(v) for v in x]])
    return path


def test_random_image_configs_without_weights_never_ask_for_pretrained_weights() -> None:
    space = load_space("image")
    fixed, note = pin_pretrained(space, {}, None)
    assert fixed == {"transfer.pretrained": False} and "--pretrained-weights" in (note or "")
    configs = configs_to_try(space, fixed=fixed, n_random=5, seed=0)
    assert all(c["transfer.pretrained"] is False for c in configs)
    # With weights the knob stays searched; pinned true without them is refused like submit.
    assert pin_pretrained(space, {}, "weights.pt") == ({}, None)
    with pytest.raises(UsageError, match="needs pretrained weights"):
        pin_pretrained(space, {"transfer.pretrained": True}, None)


def test_image_defaults_on_a_cpu_are_small_and_the_search_stays_wide() -> None:
    space = load_space("image")
    values, note = device_defaults(space, {}, "cpu")
    assert values == {"model.name": "resnet10t", "input.image_size": 32}
    assert note and "resnet18" in note and "--set" in note
    assert device_defaults(space, {}, "cuda") == ({}, None)
    assert device_defaults(space, {"input.image_size": 64}, "cpu")[0] == {"model.name": "resnet10t"}
    (config,) = configs_to_try(space, defaults=values, fixed={"model.name": "resnet18"})
    assert (config["model.name"], config["input.image_size"]) == ("resnet18", 32)
    assert device_defaults(load_space("demo"), {}, "cpu") == ({}, None)
    # The space itself is unchanged: studies still search every backbone and size.
    assert space.params["input.image_size"].default == 224


def test_try_image_random_without_weights_trains_every_config(tmp_path: Path) -> None:
    images = _image_folder(tmp_path / "images")
    done = _run(
        "try", "image", "--random", "3", "--epochs", "1", "--dataset", str(images),
        "--set", "model.name=resnet10t", "--set", "input.image_size=32", "--device", "cpu",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "transfer.pretrained is pinned to false" in done.stderr
    assert (
        "transfer.pretrained=False" in done.stdout and "transfer.pretrained=True" not in done.stdout
    )
    assert "failed:" not in done.stderr


def test_try_image_defaults_on_the_cpu_say_so_and_pinned_pretrained_is_refused(
    tmp_path: Path,
) -> None:
    images = _image_folder(tmp_path / "images")
    done = _run("try", "image", "--epochs", "1", "--dataset", str(images), "--device", "cpu",
                cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on a CPU the defaults are model.name=resnet10t input.image_size=32" in done.stderr
    assert "model.name=resnet10t" in done.stdout and "input.image_size=32" in done.stdout
    refused = _run("try", "image", "--set", "transfer.pretrained=true", cwd=tmp_path)
    assert refused.returncode != 0
    assert "needs pretrained weights" in refused.stderr and "Traceback" not in refused.stderr


def test_the_label_column_in_use_is_said_and_a_first_column_label_is_caught(
    tmp_path: Path,
) -> None:
    data = _label_first_csv(tmp_path / "label_first.csv")
    lines = describe_target(TaskSpec(family="tabular_classification", dataset=str(data)))
    assert lines[0].startswith("label column: 'p63', the last column")
    assert "pass --target digit" in lines[1]
    assert (
        describe_target(
            TaskSpec(family="tabular_classification", dataset=str(data), target="digit")
        )
        == []
    )

    chosen = _run("try", "demo", "--dataset", str(data), "--epochs", "1", "--target", "digit",
                  cwd=tmp_path)  # fmt: skip
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    assert "label column" not in chosen.stderr
    assert "val_accuracy" in chosen.stdout and "failed" not in chosen.stderr
    guessed = _run("lr-find", "demo", "--dataset", str(data), "--steps", "10", cwd=tmp_path)
    assert "label column: 'p63'" in guessed.stderr and "--target digit" in guessed.stderr


def test_a_label_last_csv_gets_no_warning(tmp_path: Path) -> None:
    path = tmp_path / "last.csv"
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "kind"])
        for _ in range(200):
            writer.writerow([f"{rng.normal():.3f}", f"{rng.normal():.3f}", rng.choice(["x", "y"])])
    lines = describe_target(TaskSpec(family="tabular_classification", dataset=str(path)))
    assert lines == ["label column: 'kind', the last column (--target NAME to pick another)"]


_NO_GPU_DRIVER = not any(os.path.exists(d) for d in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd"))


def test_verbs_that_do_not_train_never_import_torch_or_timm(tmp_path: Path) -> None:
    (tmp_path / "own_fn.py").write_text("def objective(config, report):\n    return config['x']\n")
    spec = tmp_path / "own.yaml"
    spec.write_text(
        "name: own\nspace: {params: {x: {type: float, low: 0, high: 1, default: 0.5}}}\n"
        "metric: x\ndirection: minimize\nbudget: {trials: 1}\n"
    )
    db = f"sqlite:///{tmp_path / 'own.db'}"
    verbs = [
        ["submit", str(spec), "--storage", db],
        ["status", "--storage", db],
        ["trials", "own", "--storage", db],
        ["spaces", "image"],
    ]
    if _NO_GPU_DRIVER:  # with a GPU driver, counting the GPUs takes torch
        verbs.append(
            ["worker", "--study", "own", "--objective", "own_fn:objective", "--storage", db]
        )
    # Every verb in one process (one start): what any of them imported stays in sys.modules.
    code = (
        "import sys, json; from hpsearch.cli import main\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    assert main(argv) == 0, argv\n"
        "print('LOADED', sorted(m for m in ('torch', 'timm') if m in sys.modules))\n"
    )
    env = {k: v for k, v in ENV.items() if k not in ("HPSEARCH_SERVER", "HPSEARCH_STORAGE")}
    done = subprocess.run(
        [sys.executable, "-c", code, __import__("json").dumps(verbs)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LOADED []" in done.stdout, done.stdout
    if _NO_GPU_DRIVER:
        assert "own trial 0 complete" in done.stderr, done.stderr
