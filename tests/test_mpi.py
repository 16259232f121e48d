"""Multi-process training and evaluation through Jittor's MPI engine (CPU, ``mpirun -np 2``)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from test_training import options_list, tiny_options, train_losses, write_boxes_config, write_boxes_dataset

from jsegnext.weights import read_checkpoint

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="Open MPI (mpirun) is not installed")

# Deterministic across process counts: no dropout / drop-path, and the same NMF bases for every sample.
# SGD rather than AdamW: conv biases right before a training-mode BatchNorm have a true gradient of 0,
# and Adam would turn their rounding noise (~1e-9) into full-size steps that differ between runs.
EXACT = {
    "model.decode_head.dropout_ratio": 0.0,
    "model.backbone.drop_path_rate": 0.0,
    "model.decode_head.ham_kwargs.rand_init": False,
    "model.decode_head.ham_kwargs.seed": 0,
    "optimizer": {"type": "SGD", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0},
}


def run(command, nproc=None, timeout=900):
    prefix = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(nproc)] if nproc else []
    result = subprocess.run(
        prefix + [sys.executable] + [str(c) for c in command], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mpi")
    write_boxes_dataset(root / "data", np.random.default_rng(1))
    config = write_boxes_config(root / "boxes.py", root / "data")
    options = tiny_options(**{"runner.max_iters": 4, "checkpoint_config.interval": 4}) + options_list(EXACT)
    return root, config, options


def test_two_process_training_reaches_one_process_weights(setup):
    """Same total batch, synchronised BatchNorm, averaged gradients: the same weights after 4 steps."""
    root, config, options = setup
    weights, losses = {}, {}
    for nproc in (None, 2):
        work_dir = root / f"train_np{nproc or 1}"
        run(
            [ROOT / "tools" / "train.py", config, "--work-dir", work_dir, "--no-progress", "--cfg-options", *options],
            nproc=nproc,
        )
        weights[nproc] = read_checkpoint(work_dir / "iter_4.pkl")[0]
        losses[nproc] = [loss for _, loss in train_losses(work_dir)]
        # one log line per iteration: only rank 0 writes
        assert len([l for l in (work_dir / "log.jsonl").read_text().splitlines() if '"train"' in l]) == 4
        assert sorted(p.name for p in work_dir.glob("iter_*.pkl")) == ["iter_4.pkl"]
    single, double = weights[None], weights[2]
    assert set(single) == set(double)
    for name, value in single.items():
        assert np.abs(double[name] - value).max() <= 1e-6 + 1e-4 * np.abs(value).max(), name
    # the logged loss is the mean over ranks, so both logs tell the same story
    np.testing.assert_allclose(losses[2], losses[None], rtol=1e-5)
    assert losses[None][-1] < losses[None][0]


def test_two_process_evaluation_equals_one(setup):
    root, config, options = setup
    checkpoint = root / "train_np1" / "iter_4.pkl"
    if not checkpoint.exists():
        run(
            [
                ROOT / "tools" / "train.py",
                config,
                "--work-dir",
                root / "train_np1",
                "--no-progress",
                "--cfg-options",
                *options,
            ]
        )
    results = {}
    for nproc in (None, 2):
        out = root / f"eval_np{nproc or 1}.json"
        run([ROOT / "tools" / "test.py", config, checkpoint, "--out", out, "--cfg-options", *options], nproc=nproc)
        results[nproc] = json.loads(out.read_text())
    for key in ("mIoU", "aAcc", "mAcc"):
        assert results[2][key] == pytest.approx(results[None][key], abs=1e-9)
