import os
import pickle
import random

import numpy as np
import pytest

from jsegnext.engine.checkpoint import (
    CheckpointError,
    CheckpointManager,
    is_complete_checkpoint,
    load_training_state,
    read_training_checkpoint,
    save_checkpoint,
)
from jsegnext.engine.optim import PolyLrSchedule, build_optimizer
from jsegnext.runtime import jt

nn = jt.nn
OPTIM = dict(
    type="AdamW",
    lr=1e-2,
    betas=(0.9, 0.999),
    weight_decay=0.01,
    paramwise_cfg=dict(custom_keys={"norm": dict(decay_mult=0.0), "head": dict(lr_mult=10.0)}),
)


class Tiny(nn.Module):
    def __init__(self):
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.norm = nn.BatchNorm2d(4)
        self.decode_head = nn.Conv2d(4, 2, 1)

    def execute(self, x):
        return self.decode_head(self.norm(self.backbone(x)))


def make(seed):
    jt.set_seed(seed)
    np.random.seed(seed)
    model = Tiny()
    optimizer = build_optimizer(model, OPTIM)
    return model, optimizer, PolyLrSchedule(optimizer, max_iters=10, warmup="linear", warmup_iters=2, warmup_ratio=0.1)


def train_step(model, optimizer, schedule, it):
    # the batch comes from the global NumPy / Python generators, which a resume must restore
    x = np.random.randn(2, 3, 5, 5).astype(np.float32) * (1 + random.random())
    schedule.apply(it)
    loss = (model(jt.array(x)) ** 2).mean()
    optimizer.step(loss)


def params(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_resume_continues_exactly(tmp_path):
    model, opt, sched = make(0)
    random.seed(0)
    for it in range(2):
        train_step(model, opt, sched, it)
    manager = CheckpointManager(tmp_path, max_keep=2)
    manager.save("iter_2.pkl", model, opt, {"iter": 2, "seed": 0})
    for it in range(2, 4):
        train_step(model, opt, sched, it)
    expected = params(model)

    model2, opt2, sched2 = make(123)  # other initial weights and generator states
    random.seed(99)
    assert manager.latest() == str(tmp_path / "iter_2.pkl")
    meta = load_training_state(manager.latest(), model2, opt2)
    assert meta["iter"] == 2 and opt2.n_step == 2
    for it in range(meta["iter"], 4):
        train_step(model2, opt2, sched2, it)
    got = params(model2)
    assert got.keys() == expected.keys()
    for k in expected:  # bit-identical: same data, same moments, same step count
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_file_format_is_safetensors_readable_by_weights(tmp_path):
    from safetensors.numpy import load_file

    from jsegnext.weights import read_checkpoint

    model, opt, _ = make(0)
    path = save_checkpoint(str(tmp_path / "a.pkl"), model, opt, {"iter": 7})
    plain = load_file(path)  # any safetensors reader: the state dict under its own names
    np.testing.assert_array_equal(plain["norm.running_var"], model.norm.running_var.numpy())
    state, meta = read_checkpoint(path)
    assert meta["iter"] == 7 and "norm.running_var" in state and not any(k.startswith("@") for k in state)
    ckpt = read_training_checkpoint(path)
    assert set(ckpt) == {"meta", "state_dict", "optimizer"} and "rng" in ckpt["meta"]


def test_resume_from_an_old_pickle_checkpoint(tmp_path):
    """Checkpoints of jsegnext 0.1 (Jittor's pickle .pkl) still resume, through the restricted reader."""
    from jsegnext.engine.checkpoint import model_state_numpy, optimizer_state, rng_state

    model, opt, sched = make(0)
    train_step(model, opt, sched, 0)
    obj = {
        "meta": {"iter": 1, "rng": rng_state(), "jsegnext_checkpoint": 1},
        "state_dict": model_state_numpy(model),
        "optimizer": optimizer_state(opt),
    }
    old = tmp_path / "iter_1.pkl"
    jt.save(obj, str(old))  # the 0.1 format: pickle + sha1 + trailer
    assert old.read_bytes().endswith(b"HCAJSLHD") and is_complete_checkpoint(old)
    model2, opt2, _ = make(5)
    assert load_training_state(old, model2, opt2)["iter"] == 1 and opt2.n_step == 1
    for k, v in params(model).items():
        np.testing.assert_array_equal(params(model2)[k], v)
    assert CheckpointManager(tmp_path).latest() == str(old)


def test_rotation_latest_and_best(tmp_path):
    model, opt, _ = make(0)
    manager = CheckpointManager(tmp_path, max_keep=2)
    for it in range(1, 6):
        manager.save(f"iter_{it}.pkl", model, opt, {"iter": it})
    manager.save_best("best_mIoU_iter_3.pkl", model, None, {"iter": 3})
    manager.save_best("best_mIoU_iter_5.pkl", model, None, {"iter": 5})
    assert sorted(os.listdir(tmp_path)) == ["best_mIoU_iter_5.pkl", "iter_4.pkl", "iter_5.pkl", "latest.pkl"]
    assert os.readlink(tmp_path / "latest.pkl") == "iter_5.pkl"
    assert read_training_checkpoint(tmp_path / "latest.pkl")["meta"]["iter"] == 5
    assert manager.latest() == str(tmp_path / "iter_5.pkl")
    assert manager.best() == str(tmp_path / "best_mIoU_iter_5.pkl")


def test_latest_survives_interrupted_writes(tmp_path):
    model, opt, _ = make(0)
    manager = CheckpointManager(tmp_path, max_keep=0)
    manager.save("iter_1.pkl", model, opt, {"iter": 1})
    manager.save("iter_2.pkl", model, opt, {"iter": 2})
    good = (tmp_path / "iter_2.pkl").read_bytes()
    # kill -9 while writing iter_3: a partial hidden temp file of a dead process
    (tmp_path / ".iter_3.pkl.tmp-999999999").write_bytes(good[: len(good) // 2])
    # ... and a truncated iter_4.pkl (e.g. an interrupted copy) with the link pointing at it
    (tmp_path / "iter_4.pkl").write_bytes(good[:-100])
    os.unlink(tmp_path / "latest.pkl")
    os.symlink("iter_4.pkl", tmp_path / "latest.pkl")
    assert not is_complete_checkpoint(tmp_path / "iter_4.pkl")
    assert manager.latest() == str(tmp_path / "iter_2.pkl")
    # killed after the rename but before the link moved: the newer complete file wins
    (tmp_path / "iter_4.pkl").write_bytes(good)
    os.unlink(tmp_path / "latest.pkl")
    os.symlink("iter_2.pkl", tmp_path / "latest.pkl")
    assert manager.latest() == str(tmp_path / "iter_4.pkl")
    # dangling link, no symlink at all: still found by scanning
    os.unlink(tmp_path / "latest.pkl")
    os.symlink("iter_9.pkl", tmp_path / "latest.pkl")
    assert manager.latest() == str(tmp_path / "iter_4.pkl")
    # the next save removes the dead writer's temp file
    manager.save("iter_5.pkl", model, opt, {"iter": 5})
    assert not (tmp_path / ".iter_3.pkl.tmp-999999999").exists()
    assert CheckpointManager(tmp_path / "empty").latest() is None


class _Evil:
    def __reduce__(self):  # unpickling would call os.getcwd(): must be refused, not run
        return (os.getcwd, ())


def test_clear_errors(tmp_path):
    model, opt, _ = make(0)
    path = save_checkpoint(str(tmp_path / "iter_1.pkl"), model, opt, {"iter": 1})
    data = open(path, "rb").read()
    cases = {
        "truncated.pkl": (data[: len(data) // 3], "truncated"),
        "flipped.pkl": (data[:-10] + bytes([data[-10] ^ 1]) + data[-9:], "checksum"),
        "text.pkl": (b"hello, not a checkpoint\n", "not a readable checkpoint"),
        "empty.pkl": (b"", "empty"),
        "list.pkl": (pickle.dumps([1, 2, 3]), "no 'state_dict'"),
        "evil.pkl": (pickle.dumps(_Evil()), "refused: it references posix.getcwd"),
    }
    for name, (content, message) in cases.items():
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(CheckpointError, match=message) as info:
            read_training_checkpoint(bad)
        assert str(bad) in str(info.value)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_training_checkpoint(tmp_path / "missing.pkl")

    class Other(Tiny):
        def __init__(self):
            super().__init__()
            self.decode_head = nn.Conv2d(4, 3, 1)

    with pytest.raises(CheckpointError, match=r"decode_head.weight \(2, 4, 1, 1\) vs model \(3, 4, 1, 1\)"):
        load_training_state(path, Other(), None)
    weights_only = save_checkpoint(str(tmp_path / "w.pkl"), model, None, {})
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_training_state(weights_only, model, opt)


def test_jsonl_logger_appends_after_a_killed_line(tmp_path):
    import json

    from jsegnext.engine.logger import JsonlLogger

    path = tmp_path / "log.jsonl"
    path.write_text('{"iter": 1}\n{"iter": 2, "lo')  # killed mid-line
    with JsonlLogger(path) as log:
        log.log({"mode": "val", "iter": 3, "mIoU": np.float32(41.5), "IoU": [np.nan, 1.0]})
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    record = json.loads(lines[-1])
    assert record["mIoU"] == 41.5 and record["IoU"] == [None, 1.0] and "timestamp" in record
