"""`hpsearch try SPACE --random N --epochs 1` completes every sampled config, for every space.

The issue asks for N=20 on the bundled data; the tests sample a few configs per space, with the
sizes that only set the CPU cost pinned small.
"""

from __future__ import annotations

import pytest
import timm
import torch

from hpsearch.cli import main
from hpsearch.spaces import list_spaces, load_space

pytestmark = pytest.mark.slow

SMALL = {
    "demo": [],
    "tabular": [],
    "tabular_regression": [],
    "audio": ["model.width=16", "model.depth=2", "input.n_mels=32"],
    "image": ["input.image_size=32"],
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_bundled_space_is_covered_here():
    assert set(list_spaces()) <= set(SMALL)


@pytest.mark.parametrize("space", sorted(SMALL))
def test_random_configs_of_every_space_train(space, tmp_path, capsys):
    argv = ["try", space, "--random", "3", "--epochs", "1", "--seed", "1"]
    for item in SMALL[space]:
        argv += ["--set", item]
    if space == "image":
        # A folder of weights, one file per model the space can pick, so sampled configs with
        # transfer.pretrained=true load real weights whatever model.name they draw.
        for name in load_space("image").params["model.name"].choices:
            torch.save(timm.create_model(name).state_dict(), tmp_path / f"{name}.pth")
        argv += ["--pretrained-weights", str(tmp_path)]
    status = main(argv)
    out = capsys.readouterr().out
    assert status == 0, out
    summary = out[out.index("summary:") :]
    assert len([line for line in summary.splitlines() if line.strip()[:1].isdigit()]) == 3
