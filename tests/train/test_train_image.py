"""The image_classification trainer: it learns, and every knob of the image space is real.

Runs on CPU with one thread, on timm's tiny ``test_resnet`` at 16-32 px over the bundled digits
(or an image folder made from them), so an epoch takes about a second.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import timm
import torch
from optuna.trial import TrialState
from PIL import Image
from sklearn.datasets import load_digits
from timm.data.auto_augment import AugMixAugment, AutoAugment, RandAugment
from timm.data.random_erasing import RandomErasing
from timm.layers import DropPath

from hpsearch import studies
from hpsearch.errors import TrainingDiverged
from hpsearch.spaces import load_space
from hpsearch.db.storage import open_storage
from hpsearch.families import COST_METRICS, TaskSpec
from hpsearch.train import fitter
from hpsearch.train.image import trainer as image
from hpsearch.train.core.config import LoopConfig
from hpsearch.train.image.augment import build_mixup, build_train_transform
from hpsearch.train.image.config import IMAGE_DEFAULTS, ImageAugmentConfig
from hpsearch.train.core.loop import run_epochs
from hpsearch.train.core.device import CPU_AMP_ENV
from hpsearch.worker import run_worker

#: A tiny, fast baseline: every knob test changes one thing against it.
BASE = {
    "model.name": "test_resnet",
    "input.image_size": 16,
    "transfer.pretrained": False,
    "train.amp": False,
}
DIGITS = TaskSpec(family="image_classification", dataset="digits", epochs=1)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _quality(metrics):
    # Latency and peak memory vary from run to run: a knob shows in what the model learned.
    return {k: v for k, v in metrics.items() if k not in COST_METRICS}


def _metrics(overrides=None, task=DIGITS, seed=0):
    results = list(image.fit({**BASE, **(overrides or {})}, task, seed=seed))
    return [_quality(r.metrics) for r in results]


@pytest.fixture(scope="module")
def baseline():
    torch.set_num_threads(1)
    return _metrics()


@pytest.fixture
def built(monkeypatch):
    """The models fit() builds, captured so a test can look inside them while training runs."""
    models = []
    real = image.build_image_model

    def capture(*args, **kwargs):
        models.append(real(*args, **kwargs))
        return models[-1]

    monkeypatch.setattr(image, "build_image_model", capture)
    return models


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """An ImageFolder-layout dataset: 20 PNGs of each digit, one subfolder per class."""
    root = tmp_path_factory.mktemp("digits_png")
    digits = load_digits()
    for label in range(10):
        (root / f"digit_{label}").mkdir()
        rows = np.flatnonzero(digits.target == label)[:20]
        for i in rows:
            pixels = np.rint(digits.images[i] * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"digit_{label}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A test_resnet state dict (ImageNet's 1000-class head) with a known stem tensor."""
    torch.manual_seed(1)
    model = timm.create_model("test_resnet")
    with torch.no_grad():
        model.conv1[0].weight.copy_(
            torch.linspace(-1, 1, model.conv1[0].weight.numel()).view_as(model.conv1[0].weight)
        )
    path = tmp_path_factory.mktemp("weights") / "test_resnet.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


@pytest.fixture(scope="module")
def learned():
    """Two epochs at 32 px: enough to learn the digits."""
    torch.set_num_threads(1)
    return _metrics({"input.image_size": 32}, DIGITS.model_copy(update={"epochs": 2}))


def test_digits_are_learned_at_32px(learned):
    assert len(learned) == 2
    assert learned[-1]["val_accuracy"] > 0.5  # chance is 0.1
    assert learned[-1]["val_loss"] < learned[0]["val_loss"]


def test_the_same_seed_trains_the_same(baseline):
    # Without this, the knob tests below could pass on noise alone.
    assert _metrics() == baseline
    assert _metrics(seed=1) != baseline


def test_the_trainer_is_registered_for_the_family():
    assert fitter("image_classification") is image.fit
    assert set(load_space("image").params) <= set(IMAGE_DEFAULTS)


@pytest.mark.parametrize(
    "base, knob, value",
    [
        ({}, "model.name", "test_efficientnet"),
        ({}, "model.drop_rate", 0.3),
        ({}, "model.drop_path_rate", 0.2),
        ({}, "input.image_size", 32),
        ({}, "optim.name", "sgd"),
        ({}, "optim.lr", 1e-2),
        ({}, "sched.name", "onecycle"),
        ({"optim.name": "sgd"}, "optim.momentum", 0.8),
        ({}, "optim.beta1", 0.8),
        ({}, "optim.beta2", 0.95),
        ({}, "optim.eps", 1e-6),
        ({}, "optim.weight_decay", 0.1),
        ({}, "loss.name", "mse"),
        ({}, "loss.name", "soft_f1"),
        ({}, "loss.label_smoothing", 0.0),
        ({}, "train.batch_size", 32),
        ({}, "train.grad_accum", 2),
        ({}, "train.balanced_sampler", True),
        # train.amp acts on CUDA only (or with HPSEARCH_CPU_AMP=1): tested further down.
        ({}, "train.grad_clip", 0.1),
        ({}, "train.ema", True),
        ({"train.ema": True}, "train.ema_decay", 0.9),
        ({}, "aug.policy", "randaugment"),
        ({}, "aug.policy", "autoaugment"),
        ({}, "aug.policy", "augmix"),
        ({}, "aug.cutout", 0.5),
        ({}, "aug.mixup", True),
        ({"aug.mixup": True}, "aug.mixup_alpha", 1.0),
        ({}, "aug.cutmix", True),
        ({"aug.cutmix": True}, "aug.cutmix_alpha", 0.5),
    ],
)
def test_each_knob_changes_training(baseline, base, knob, value):
    before = _metrics(base) if base else baseline
    assert _metrics({**base, knob: value}) != before


def test_drop_path_puts_stochastic_depth_in_the_model(built):
    image.fit({**BASE, "model.drop_path_rate": 0.2, "model.drop_rate": 0.3}, DIGITS)
    rates = [m.drop_prob for m in built[-1].modules() if isinstance(m, DropPath)]
    assert rates and max(rates) == pytest.approx(0.2)
    assert built[-1].drop_rate == 0.3
    image.fit(BASE, DIGITS)
    assert not any(isinstance(m, DropPath) for m in built[-1].modules())


def test_mixup_and_cutmix_mix_images_and_targets():
    assert build_mixup(ImageAugmentConfig(), label_smoothing=0.1, n_classes=10) is None
    x = torch.randn(8, 3, 16, 16)
    y = torch.arange(8)
    np.random.seed(0)  # timm draws the mixing weight from NumPy
    for aug in (ImageAugmentConfig(mixup=True, mixup_alpha=1.0), ImageAugmentConfig(cutmix=True)):
        mixup = build_mixup(aug, label_smoothing=0.0, n_classes=10)
        mixed, targets = mixup(x.clone(), y)
        assert targets.shape == (8, 10)
        assert torch.allclose(targets.sum(dim=1), torch.ones(8))
        assert (targets.max(dim=1).values < 1).all()  # two classes per row, not one-hot
        assert not torch.equal(mixed, x)
    smoothed = build_mixup(ImageAugmentConfig(mixup=True), label_smoothing=0.1, n_classes=10)
    assert (smoothed(x.clone(), y)[1] > 0).all()  # label smoothing reaches every class


@pytest.mark.parametrize(
    "policy, cutout, op",
    [
        ("randaugment", 0.0, RandAugment),
        ("autoaugment", 0.0, AutoAugment),
        ("augmix", 0.0, AugMixAugment),
        ("none", 0.25, RandomErasing),
    ],
)
def test_the_augmentation_pipeline_holds_the_policy(policy, cutout, op):
    aug = ImageAugmentConfig(policy=policy, cutout=cutout)
    pipeline = build_train_transform(aug, 32, mean=(0.5,) * 3, std=(0.5,) * 3)
    ops = [type(t) for t in pipeline.transforms]
    assert op in ops
    assert (RandomErasing in ops) == (cutout > 0)
    if op is RandomErasing:
        assert pipeline.transforms[-1].probability == 0.25
    assert pipeline(Image.new("RGB", (32, 32))).shape == (3, 32, 32)


def test_no_augmentation_means_no_per_image_pipeline():
    assert build_train_transform(ImageAugmentConfig(), 32, mean=(0.5,) * 3, std=(0.5,) * 3) is None


def test_amp_on_a_cpu_trains_in_fp32_unless_opted_in(monkeypatch, baseline):
    # bf16 autocast on CPUs with AMX/AVX512-BF16 made this very run (16 px: a 1x1 feature map
    # before a stride-2 3x3 conv) diverge: oneDNN's bf16 weight gradients there hold NaN.
    monkeypatch.delenv(CPU_AMP_ENV, raising=False)
    assert _metrics({"train.amp": True}) == baseline  # baseline: train.amp false
    assert image.autocast_dtype(torch.device("cpu"), True) is None
    assert image.autocast_dtype(torch.device("cuda"), True) == torch.float16
    monkeypatch.setenv(CPU_AMP_ENV, "1")
    assert image.autocast_dtype(torch.device("cpu"), True) == torch.bfloat16
    assert image.autocast_dtype(torch.device("cpu"), False) is None


@pytest.mark.parametrize("opt_in, dtype", [("1", torch.bfloat16), ("0", torch.float32)])
def test_amp_trains_under_autocast_when_opted_in(built, monkeypatch, digit_folder, opt_in, dtype):
    # 32 px on 150 images: no 1x1 feature map, so bf16 stays finite on every oneDNN kernel
    # path (AMX, AVX512-BF16, AVX-512) and on the slow non-oneDNN one of AVX2-only CPUs.
    monkeypatch.setenv(CPU_AMP_ENV, opt_in)
    seen = set()
    config = {**BASE, "input.image_size": 32, "train.amp": True}
    run = image.fit(config, TaskSpec(dataset=str(digit_folder), epochs=1), seed=0)
    model = built[-1]
    model.fc.register_forward_hook(lambda m, args, out: seen.add(out.dtype) if m.training else None)
    result = next(run)
    assert seen == {dtype}
    assert math.isfinite(result.train_loss) and math.isfinite(result.metrics["val_loss"])


def test_a_bad_cpu_amp_setting_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(CPU_AMP_ENV, "maybe")
    with pytest.raises(ValueError, match=f"{CPU_AMP_ENV}='maybe'.*set it to 1"):
        image.fit({**BASE, "train.amp": True}, DIGITS, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_trains_in_fp16_on_cuda(built, monkeypatch):
    monkeypatch.delenv(CPU_AMP_ENV, raising=False)

    def run(amp: bool) -> tuple[set[torch.dtype], list[float]]:
        seen: set[torch.dtype] = set()
        results = image.fit({**BASE, "train.amp": amp}, DIGITS, seed=0, device="cuda")
        built[-1].fc.register_forward_hook(
            lambda m, args, out: seen.add(out.dtype) if m.training else None
        )
        return seen, [r.metrics["val_loss"] for r in results]

    (amp_dtypes, with_amp), (fp32_dtypes, without) = run(True), run(False)
    assert amp_dtypes == {torch.float16} and fp32_dtypes == {torch.float32}
    assert all(math.isfinite(v) for v in with_amp) and with_amp != without


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, None])
def test_a_run_diverging_under_cpu_bf16_says_how_to_turn_it_off(amp_dtype):
    # The real loop over a real (tiny) model; only the loss is made non-finite, as NaN weight
    # gradients make it, since which CPUs produce those depends on their kernels.
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(12, 4), torch.arange(3).repeat(4)

    def batch_loss(idx):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp_dtype is not None):
            return model(x[idx]).float().sum() * float("nan")

    run = run_epochs(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        loop=LoopConfig(batch_size=4),
        sched="constant",
        epochs=1,
        generator=torch.Generator().manual_seed(0),
        train_y=y,
        batch_loss=batch_loss,
        val_y=y,
        val_logits=lambda m, rows: m(x[rows]),
        eval_chunk=12,
        amp_dtype=amp_dtype,
    )
    with pytest.raises(TrainingDiverged, match="training loss is nan in epoch 1") as failure:
        next(run)
    assert (f"unset {CPU_AMP_ENV}" in str(failure.value)) == (amp_dtype is not None)
    assert "try a lower optim.lr" in str(failure.value)


def test_ema_weights_are_what_is_evaluated(learned):
    # An EMA that barely moves from the random initialization scores near chance, while the
    # trained weights it shadows do not.
    shadow = _metrics(
        {"input.image_size": 32, "train.ema": True, "train.ema_decay": 0.9999},
        DIGITS.model_copy(update={"epochs": 2}),
    )
    assert learned[-1]["val_accuracy"] > 0.5
    assert shadow[-1]["val_accuracy"] < 0.2  # chance is 0.1


def test_pretrained_weights_from_a_local_file_are_loaded(built, weights_file):
    path, state = weights_file
    task = DIGITS.model_copy(update={"pretrained_weights": str(path)})
    image.fit({**BASE, "transfer.pretrained": True}, task)
    model = built[-1]
    assert torch.equal(model.conv1[0].weight, state["conv1.0.weight"])
    assert model.fc.out_features == 10  # the checkpoint's 1000-class head is not loaded
    image.fit(BASE, task)  # transfer.pretrained false: the file is not used
    assert not torch.equal(built[-1].conv1[0].weight, state["conv1.0.weight"])


def test_the_backbone_stays_frozen_for_freeze_epochs(built, weights_file):
    path, _ = weights_file
    task = DIGITS.model_copy(update={"pretrained_weights": str(path), "epochs": 2})
    run = image.fit({**BASE, "transfer.pretrained": True, "transfer.freeze_epochs": 1}, task)
    model = built[-1]
    head = {n for n, _ in model.named_parameters() if n.startswith("fc.")}

    def snapshot():
        return {n: t.detach().clone() for n, t in model.state_dict().items()}

    start = snapshot()
    next(run)
    frozen = snapshot()
    changed = {n for n in start if not torch.equal(start[n], frozen[n])}
    assert changed == head  # weights and batch-norm statistics of the backbone untouched
    next(run)
    thawed = snapshot()
    assert not torch.equal(frozen["conv1.0.weight"], thawed["conv1.0.weight"])
    assert not torch.equal(frozen["bn1.running_mean"], thawed["bn1.running_mean"])


def test_the_backbone_learns_ten_times_slower_than_the_new_head(built, weights_file):
    path, _ = weights_file
    task = DIGITS.model_copy(update={"pretrained_weights": str(path)})
    config = {**BASE, "transfer.pretrained": True, "sched.name": "constant", "optim.lr": 0.01}
    result = next(image.fit(config, task))
    assert result.lr == pytest.approx(0.01)  # the head's group comes first
    without = next(image.fit({**config, "transfer.pretrained": False}, DIGITS))
    assert _quality(without.metrics) != _quality(result.metrics)


def test_pretrained_without_weights_says_how_to_give_them(tmp_path):
    with pytest.raises(ValueError, match="task.pretrained_weights"):
        image.fit({**BASE, "transfer.pretrained": True}, DIGITS)
    missing = DIGITS.model_copy(update={"pretrained_weights": str(tmp_path / "nope.pth")})
    with pytest.raises(ValueError, match="nope.pth"):
        image.fit({**BASE, "transfer.pretrained": True}, missing)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth.*cannot be loaded"):
        image.fit(
            {**BASE, "transfer.pretrained": True},
            DIGITS.model_copy(update={"pretrained_weights": str(bad)}),
        )


def test_hub_weights_offline_fail_clearly(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    task = DIGITS.model_copy(update={"pretrained_weights": "hub"})
    with pytest.raises(ValueError, match="hub.*task.pretrained_weights"):
        image.fit({**BASE, "transfer.pretrained": True}, task)


def test_an_image_folder_trains(digit_folder):
    task = TaskSpec(dataset=str(digit_folder), epochs=3)
    config = {**BASE, "train.batch_size": 16, "optim.lr": 3e-3}
    results = list(image.fit(config, task, seed=0))
    assert [r.epoch for r in results] == [1, 2, 3]
    assert all(math.isfinite(r.train_loss) for r in results)
    assert results[-1].metrics["val_accuracy"] > 0.3  # 10 classes, 150 training images


@pytest.mark.parametrize(
    "overrides, task, message",
    [
        ({"model.nmae": "resnet18"}, DIGITS, "model.nmae"),
        ({"model.name": "resnet-9000"}, DIGITS, "model.name"),
        ({"aug.policy": "trivialaugment"}, DIGITS, "aug.policy"),
        ({"aug.cutout": 1.5}, DIGITS, "aug.cutout"),
        ({"optim.name": "adamx"}, DIGITS, "optim.name"),
        ({"input.image_size": 4}, DIGITS, "input.image_size"),
        ({"train.amp": "yes"}, DIGITS, "train.amp"),
        ({"loss.activation_reg": 0.1}, DIGITS, "loss.activation_reg"),
        ({}, TaskSpec(dataset="/no/such/folder"), "/no/such/folder"),
        ({}, TaskSpec(family="tabular_classification"), "tabular_classification"),
    ],
)
def test_bad_knobs_and_tasks_are_refused_by_name(overrides, task, message):
    with pytest.raises(ValueError, match=message):
        image.fit({**BASE, **overrides}, task)


def test_a_diverging_run_fails_as_diverged():
    with pytest.raises(TrainingDiverged):
        _metrics({"optim.name": "sgd", "optim.lr": 1e6, "optim.momentum": 0.9})


def test_a_study_over_the_image_space_runs_through_the_worker(tmp_path, digit_folder):
    url = f"sqlite:///{tmp_path}/image.db"
    studies.create_study(
        open_storage(url),
        {
            "name": "images",
            "space": "image",
            "task": {"dataset": str(digit_folder), "epochs": 1},
            "fixed": {
                "model.name": "resnet10t",
                "input.image_size": 32,
                "transfer.pretrained": False,
            },
            "budget": {"trials": 2},
            "pruner": "none",
            "seed": 0,
        },
    )
    # The folder is under the worker's data root: without one it reads bundled datasets only.
    assert run_worker(url, study="images", device="cpu", data_roots=[str(digit_folder)]) == 2
    trials = optuna.load_study(study_name="images", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(0.0 <= t.value <= 1.0 for t in trials)
