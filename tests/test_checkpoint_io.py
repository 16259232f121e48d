"""The checkpoint file reader and writer alone (NumPy only: these also run under NumPy 2)."""

import hashlib
import pickle

import numpy as np
import pytest
from malicious import FORMATS, REFUSED, write_malicious
from torch_format import save_torch_checkpoint, save_torch_legacy_checkpoint

from jsegnext import checkpoint_io
from jsegnext.errors import CheckpointError


def jittor_pkl(obj):
    """Bytes as ``jt.save`` writes them (and jsegnext 0.1 did): pickle + sha1 + trailer."""
    payload = pickle.dumps(obj, 4)
    return payload + hashlib.sha1(payload).digest() + b"HCAJSLHD"


@pytest.mark.parametrize("kind", FORMATS)
def test_reader_refuses_every_malicious_format(tmp_path, kind):
    marker = tmp_path / "PWNED"
    path = write_malicious(tmp_path, kind, marker)
    with pytest.raises(CheckpointError) as info:
        checkpoint_io.load(path)
    assert str(info.value) == f"{path}: refused: it references {REFUSED}, which no checkpoint contains"
    assert not marker.exists()


def test_protocol_0_pickles_are_refused_too(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "old.pkl"
    path.write_bytes(f"cposix\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(CheckpointError, match="refused: it references posix.system"):
        checkpoint_io.load(path)
    assert not marker.exists()


def test_reader_reads_every_format_of_the_same_weights(tmp_path):
    state = {
        "a.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "a.bias": np.ones(3, np.float16),
        "n.num_batches_tracked": np.array(7, np.int64),
    }
    obj = {
        "meta": {"CLASSES": ("x", "y"), "PALETTE": [[1, 2, 3], [4, 5, 6]], "config": "model = dict()"},
        "state_dict": state,
    }
    files = {
        "zip.pth": lambda p: save_torch_checkpoint(obj, p),
        "legacy.pth": lambda p: save_torch_legacy_checkpoint(obj, p),
        "jittor.pkl": lambda p: open(p, "wb").write(jittor_pkl(obj)),
        "plain.pkl": lambda p: open(p, "wb").write(pickle.dumps(obj, 5)),
        "ours.pkl": lambda p: checkpoint_io.save(p, obj),
    }
    for name, write in files.items():
        path = str(tmp_path / name)
        write(path)
        back = checkpoint_io.load(path)
        assert back["meta"]["CLASSES"] in (("x", "y"), ["x", "y"]) and back["meta"]["config"] == "model = dict()"
        assert set(back["state_dict"]) == set(state), name
        for key, value in state.items():
            assert back["state_dict"][key].dtype == value.dtype, (name, key)
            np.testing.assert_array_equal(back["state_dict"][key], value)


def test_numpy_1_and_2_pickles_both_load(tmp_path):
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = pickle.dumps({"state_dict": {"w": array, "s": np.float64(2.5)}}, 2)  # GLOBAL opcodes: text names
    here = b"numpy._core" if b"numpy._core" in data else b"numpy.core"
    for spelling in (b"numpy.core", b"numpy._core"):
        path = tmp_path / f"{spelling.decode()}.pkl"
        path.write_bytes(data.replace(here + b".multiarray", spelling + b".multiarray"))
        back = checkpoint_io.load(path)["state_dict"]
        np.testing.assert_array_equal(back["w"], array)
        assert back["s"] == 2.5


def test_real_pytorch_files_if_pytorch_is_installed(tmp_path):
    torch = pytest.importorskip("torch", reason="optional check against real torch.save output")
    base = torch.randn(4, 6)
    state = {
        "w": base,
        "view": base.t(),
        "slice": base[1:3, 2:5],
        "half": base.half(),
        "bf16": base[0].bfloat16(),
        "p": torch.nn.Parameter(torch.ones(2)),
        "n": torch.tensor(3),
    }
    for legacy in (False, True):
        path = tmp_path / f"real_{legacy}.pth"
        torch.save({"state_dict": state}, path, _use_new_zipfile_serialization=not legacy)
        back = checkpoint_io.load(path)["state_dict"]
        for key, value in state.items():
            np.testing.assert_array_equal(
                back[key], value.detach().float().numpy() if key == "bf16" else value.detach().numpy()
            )


def test_damaged_jsegnext_files_are_named_and_never_half_loaded(tmp_path):
    path = checkpoint_io.save(str(tmp_path / "w.pkl"), {"state_dict": {"w": np.ones(64, np.float32)}, "meta": {}})
    data = open(path, "rb").read()
    for name, content, message in (
        ("cut.pkl", data[:-4], "truncated"),
        ("flip.pkl", data[:-8] + bytes([data[-8] ^ 4]) + data[-7:], "checksum"),
    ):
        (tmp_path / name).write_bytes(content)
        assert not checkpoint_io.is_complete(tmp_path / name)
        with pytest.raises(CheckpointError, match=message):
            checkpoint_io.load(tmp_path / name)


def test_mmengine_history_buffers_are_kept_as_inert_data(tmp_path):
    """mmengine training checkpoints pickle HistoryBuffer objects in 'message_hub': read as data, never built."""
    import sys
    import types

    names = ("mmengine", "mmengine.logging", "mmengine.logging.history_buffer")
    modules = {name: types.ModuleType(name) for name in names}  # importable stand-ins, to pickle one

    class HistoryBuffer:
        def __init__(self):
            self.max_length, self._log_history = 3, np.arange(3.0)

    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = names[-1], "HistoryBuffer"
    modules[names[-1]].HistoryBuffer = HistoryBuffer
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update(modules)
    try:
        data = pickle.dumps(
            {"state_dict": {"w": np.ones(2)}, "message_hub": {"log_scalars": {"loss": HistoryBuffer()}}}, 2
        )
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
    (tmp_path / "mmengine.pth").write_bytes(data)
    back = checkpoint_io.load(tmp_path / "mmengine.pth")
    buffer = back["message_hub"]["log_scalars"]["loss"]
    assert type(buffer) is not HistoryBuffer and buffer.state["max_length"] == 3
    np.testing.assert_array_equal(back["state_dict"]["w"], np.ones(2))


def test_a_file_cannot_alter_what_the_reader_hands_out_to_the_next(tmp_path):
    # BUILD on the FloatStorage type the allow-list returns: try to make every later float32 storage objects
    build = b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x01\x00\x00\x00Osb."
    (tmp_path / "tamper.pkl").write_bytes(build)
    with pytest.raises(CheckpointError):
        checkpoint_io.load(tmp_path / "tamper.pkl")
    save_torch_checkpoint({"w": np.arange(3, dtype=np.float32)}, tmp_path / "next.pth")
    np.testing.assert_array_equal(checkpoint_io.load(tmp_path / "next.pth")["w"], np.arange(3, dtype=np.float32))
