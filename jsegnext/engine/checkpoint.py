"""Training checkpoints: atomic writes, rotation, a crash-proof ``latest``, exact resume.

File format: Jittor's ``.pkl`` (what ``jt.save`` writes, so ``jt.load`` and
``jsegnext.weights`` read it): ``pickle(obj, protocol 4) + sha1(pickle) + b"HCAJSLHD"``, with

    {'meta': {..., 'rng': {...}}, 'state_dict': {name: np.ndarray}, 'optimizer': {...}}

* ``state_dict``: every Var of ``model.state_dict()`` (parameters and BN statistics) as NumPy.
* ``optimizer``: the optimiser's step count and its per-parameter buffers (AdamW ``m`` and
  ``values`` = exp_avg / exp_avg_sq; SGD ``values`` = momentum), group by group, with the
  parameter names of each group so a mismatch is reported by name. Learning rates are not
  restored: they come from the config and the schedule, recomputed every iteration.
* ``meta``: what the caller passes (iteration, best mIoU, config ...) plus ``rng``: Python
  ``random`` and NumPy global generator states, and Jittor's seed (``jt.get_seed()``).
  Jittor exposes no way to read or restore the position of its generator's stream: restoring
  re-seeds it with that seed. Exact continuation of Jittor randomness (drop path, dropout, NMF
  bases) therefore needs the trainer to re-seed Jittor deterministically (e.g. from
  (seed, iteration) at every iteration, see :func:`iteration_seed`).

Crash safety (``kill -9`` at any instant, power loss):

* a checkpoint is written to a hidden temporary file in the same directory
  (``.iter_N.pkl.tmp-<pid>``), flushed and fsync'ed, then renamed over the final name with
  ``os.replace`` (atomic on POSIX), and the directory is fsync'ed; a reader never sees a partial
  ``iter_N.pkl``, and leftovers of dead writers are deleted at the next save;
* ``latest.pkl`` is a relative symlink to the newest periodic checkpoint, itself replaced
  atomically (new symlink under a temporary name + ``os.replace``), and only after the target
  is complete; it is loadable directly like mmcv's ``latest.pth``;
* :meth:`CheckpointManager.latest` does not trust the link blindly: it returns the newest
  checkpoint (by iteration in the name) among the link's target and the ``iter_N.pkl`` files
  that is complete (checksum verified), so a dangling link, a truncated or hand-copied file, or
  a file system without symlinks still resumes from the last good state;
* old checkpoints are deleted (``max_keep``) only after the new one and the link are in place.
"""
import hashlib
import io
import os
import pickle
import random
import re
import time

import numpy as np

from ..runtime import jt
from ..weights import CheckpointError

MAGIC = b"HCAJSLHD"  # Jittor's pickle trailer
_SHA1 = 20
FORMAT_VERSION = 1
LATEST = "latest.pkl"
_PERIODIC = re.compile(r"^iter_(\d+)\.pkl$")
_ITER_NAME = re.compile(r"^iter_(\d+)(?:_[^/]*)?\.pkl$")
_BEST = re.compile(r"^best_.*\.pkl$")
_TMP = re.compile(r"^\..+\.tmp-(\d+)$")

__all__ = ["CheckpointError", "CheckpointManager", "save_checkpoint", "load_checkpoint", "load_training_state",
           "resume", "is_complete_checkpoint", "rng_state", "restore_rng_state", "iteration_seed",
           "optimizer_state", "load_optimizer_state"]


# ---------------------------------------------------------------------------------- file format
def _encode(obj):
    payload = pickle.dumps(obj, 4)
    return payload + hashlib.sha1(payload).digest() + MAGIC


_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "Path"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "slice"),
    ("builtins", "range"), ("builtins", "bytearray"),
}


class _Unpickler(pickle.Unpickler):
    """Only the types a checkpoint holds (NumPy arrays and plain Python data): no code runs."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS or (module.startswith("numpy.dtypes") and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"holds a {module}.{name} object, which jsegnext checkpoints never contain")


def _decode(data, path):
    if data.endswith(MAGIC):
        payload, digest = data[:-_SHA1 - len(MAGIC)], data[-_SHA1 - len(MAGIC):-len(MAGIC)]
        if hashlib.sha1(payload).digest() != digest:
            raise CheckpointError(f"{path}: corrupt checkpoint (checksum mismatch); delete it and use an older one")
    else:
        payload = data  # a plain pickle (Jittor accepts those too), or a truncated file
    try:
        return _Unpickler(io.BytesIO(payload)).load()
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a usable checkpoint"
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        hint = "" if data.endswith(MAGIC) else " (truncated, e.g. an interrupted copy, or not a checkpoint file)"
        raise CheckpointError(f"{path}: not a readable checkpoint{hint}: {reason}") from None


def is_complete_checkpoint(path):
    """True when ``path`` is a whole Jittor ``.pkl`` (trailer present, checksum right)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    if len(data) < _SHA1 + len(MAGIC) or not data.endswith(MAGIC):
        return False
    return hashlib.sha1(data[:-_SHA1 - len(MAGIC)]).digest() == data[-_SHA1 - len(MAGIC):-len(MAGIC)]


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_name(path):
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}")


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the complete new one."""
    path = os.fspath(path)
    tmp = _temp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


# ---------------------------------------------------------------------------------- RNG
def rng_state():
    """States of Python ``random``, NumPy's global generator, and Jittor's seed."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "jittor_seed": int(jt.get_seed())}


def restore_rng_state(state):
    """Inverse of :func:`rng_state` (Jittor: re-seeded with the saved seed, see the module docstring)."""
    if not state:
        return
    if "python" in state:
        random.setstate(_tuples(state["python"]))
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "jittor_seed" in state:
        jt.set_seed(int(state["jittor_seed"]))


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def iteration_seed(seed, it, rank=0):
    """A seed for iteration ``it`` (and MPI rank) from the run's seed: re-seeding Jittor with it
    before every iteration makes Jittor's randomness independent of where a run was resumed."""
    return int(np.random.SeedSequence([int(seed), int(it), int(rank)]).generate_state(1)[0] & 0x7FFFFFFF)


# ---------------------------------------------------------------------------------- model / optimiser
def model_state_numpy(model):
    return {name: var.numpy() for name, var in model.state_dict().items() if isinstance(var, jt.Var)}


def load_model_state(model, state_dict, source="checkpoint"):
    """Copy ``state_dict`` into ``model``; every key and shape must match (an error names them)."""
    target = {name: var for name, var in model.state_dict().items() if isinstance(var, jt.Var)}
    missing = [k for k in target if k not in state_dict]
    unexpected = [k for k in state_dict if k not in target]
    mismatched = [f"{k} {tuple(np.shape(state_dict[k]))} vs model {tuple(v.shape)}"
                  for k, v in target.items() if k in state_dict and tuple(np.shape(state_dict[k])) != tuple(v.shape)]
    problems = [f"{len(items)} {title}: {', '.join(items[:5])}{', ...' if len(items) > 5 else ''}"
                for title, items in (("missing from the checkpoint", missing), ("not in the model", unexpected),
                                     ("with another shape", mismatched)) if items]
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))
    for name, var in target.items():
        var.update(jt.array(np.ascontiguousarray(state_dict[name]).astype(str(var.dtype), copy=False)))


def _buffer_keys(group):
    """Keys of per-parameter optimiser buffers in a Jittor param group (lists aligned with params)."""
    n = len(group["params"])
    return sorted(k for k, v in group.items()
                  if k not in ("params", "grads", "param_names") and isinstance(v, list) and len(v) == n
                  and all(isinstance(x, jt.Var) for x in v))


def optimizer_state(optimizer):
    """Step count and per-parameter buffers of a Jittor optimiser, as NumPy."""
    groups = []
    for group in optimizer.param_groups:
        groups.append({
            "param_names": list(group.get("param_names", [])),
            "shapes": [tuple(p.shape) for p in group["params"]],
            "buffers": {k: [v.numpy() for v in group[k]] for k in _buffer_keys(group)},
            "hyper": {k: group[k] for k in ("lr", "initial_lr", "weight_decay", "lr_mult", "decay_mult",
                                             "custom_key") if k in group},
        })
    return {"type": type(optimizer).__name__, "n_step": int(optimizer.n_step), "groups": groups}


def load_optimizer_state(optimizer, state, source="checkpoint"):
    """Restore :func:`optimizer_state` into an optimiser built the same way (same groups, same params)."""
    kind = type(optimizer).__name__
    if state.get("type") != kind:
        raise CheckpointError(f"{source}: optimizer state is for {state.get('type')}, not {kind}")
    saved = state["groups"]
    if len(saved) != len(optimizer.param_groups):
        raise CheckpointError(f"{source}: optimizer has {len(saved)} parameter groups in the checkpoint, "
                              f"{len(optimizer.param_groups)} now (another model or paramwise_cfg?)")
    for i, (group, old) in enumerate(zip(optimizer.param_groups, saved)):
        names = list(group.get("param_names", []))
        if names and old["param_names"] and names != old["param_names"]:
            diff = sorted(set(names) ^ set(old["param_names"]))[:5] or ["(same names, other order)"]
            raise CheckpointError(f"{source}: optimizer group {i} holds other parameters than now: {', '.join(diff)}")
        shapes = [tuple(p.shape) for p in group["params"]]
        if shapes != [tuple(s) for s in old["shapes"]]:
            raise CheckpointError(f"{source}: optimizer group {i} parameter shapes differ from the model's")
        keys = _buffer_keys(group)
        if sorted(old["buffers"]) != keys:
            raise CheckpointError(f"{source}: optimizer group {i} has buffers {sorted(old['buffers'])}, expected {keys}")
    for group, old in zip(optimizer.param_groups, saved):
        for key, arrays in old["buffers"].items():
            for var, arr in zip(group[key], arrays):
                var.update(jt.array(np.ascontiguousarray(arr).astype(str(var.dtype), copy=False)).stop_grad())
    optimizer.n_step = int(state["n_step"])


# ---------------------------------------------------------------------------------- save / load
def save_checkpoint(path, model, optimizer=None, meta=None):
    """Write model (+ optimiser) state and ``meta`` (+ RNG states) atomically to ``path``. Returns path."""
    meta = dict(meta or {})
    meta.setdefault("rng", rng_state())
    meta.setdefault("time", time.strftime("%Y-%m-%d %H:%M:%S"))
    meta["jsegnext_checkpoint"] = FORMAT_VERSION
    obj = {"meta": meta, "state_dict": model_state_numpy(model)}
    if optimizer is not None:
        obj["optimizer"] = optimizer_state(optimizer)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_bytes(path, _encode(obj))
    return os.fspath(path)


def load_checkpoint(path):
    """Read a checkpoint file into a dict; :class:`CheckpointError` naming the file if it is
    missing, truncated, corrupt or not a checkpoint."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read checkpoint ({err.strerror or err})") from None
    if not data:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    obj = _decode(data, path)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a jsegnext checkpoint (no 'state_dict' inside)")
    obj.setdefault("meta", {})
    return obj


def load_training_state(path, model, optimizer=None, restore_rng=True):
    """Resume: load weights, optimiser state and RNG states from ``path``; return its ``meta``."""
    ckpt = load_checkpoint(path)
    load_model_state(model, ckpt["state_dict"], source=os.fspath(path))
    if optimizer is not None:
        if "optimizer" not in ckpt:
            raise CheckpointError(f"{path}: holds no optimizer state, cannot resume training from it "
                                  "(use it as load_from to start a new run from these weights)")
        load_optimizer_state(optimizer, ckpt["optimizer"], source=os.fspath(path))
    meta = ckpt["meta"]
    if restore_rng:
        restore_rng_state(meta.get("rng"))
    return meta


resume = load_training_state


# ---------------------------------------------------------------------------------- manager
def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class CheckpointManager:
    """Checkpoints of one run in ``work_dir``: ``iter_N.pkl`` (the newest ``max_keep`` kept;
    ``max_keep <= 0`` keeps all), ``latest.pkl`` -> newest periodic one, ``best_*.pkl`` (one kept).
    Call from one process only (rank 0)."""

    def __init__(self, work_dir, max_keep=3):
        self.work_dir = os.fspath(work_dir)
        self.max_keep = int(max_keep)

    def path(self, name):
        return os.path.join(self.work_dir, name)

    def periodic(self):
        """[(iteration, path)] of the ``iter_N.pkl`` files present, oldest first."""
        try:
            names = os.listdir(self.work_dir)
        except FileNotFoundError:
            return []
        found = [(int(m.group(1)), self.path(n)) for n in names for m in [_PERIODIC.match(n)] if m]
        return sorted(found)

    def save(self, name, model, optimizer=None, meta=None):
        """Write ``name`` (e.g. ``iter_16000.pkl``), point ``latest.pkl`` at it, prune old ones."""
        path = save_checkpoint(self.path(name), model, optimizer, meta)
        self._point_latest(name)
        self._prune(keep=name)
        self._remove_dead_temps()
        return path

    def save_best(self, name, model, optimizer=None, meta=None):
        """Write ``name`` (e.g. ``best_mIoU_iter_16000.pkl``), then delete the previous best file(s)."""
        path = save_checkpoint(self.path(name), model, optimizer, meta)
        for other in os.listdir(self.work_dir):
            if other != name and _BEST.match(other):
                self._remove(self.path(other))
        return path

    def latest(self):
        """Path of the newest complete checkpoint to resume from, or None (see the module docstring)."""
        candidates = []
        link = self.path(LATEST)
        if os.path.islink(link):
            target = os.path.basename(os.readlink(link))
            m = _ITER_NAME.match(target)
            if m:
                candidates.append((int(m.group(1)), 1, self.path(target)))
        candidates += [(it, 0, path) for it, path in self.periodic()]
        for _, _, path in sorted(candidates, reverse=True):
            if is_complete_checkpoint(path):
                return path
        return None

    def best(self):
        names = sorted(n for n in os.listdir(self.work_dir) if _BEST.match(n)) if os.path.isdir(self.work_dir) else []
        return self.path(names[-1]) if names else None

    # ------------------------------------------------------------------ internals
    def _point_latest(self, name):
        link = self.path(LATEST)
        tmp = _temp_name(link)
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(name, tmp)
            os.replace(tmp, link)
            _fsync_dir(self.work_dir)
        except OSError:
            # no symlinks here (some network / FUSE file systems): latest() finds the newest
            # complete iter_N.pkl by itself
            if os.path.lexists(tmp):
                self._remove(tmp)

    def _prune(self, keep):
        if self.max_keep <= 0:
            return
        periodic = self.periodic()
        protected = {self.path(keep)}
        link = self.path(LATEST)
        if os.path.islink(link):
            protected.add(self.path(os.path.basename(os.readlink(link))))
        for _, path in periodic[:-self.max_keep] if len(periodic) > self.max_keep else []:
            if path not in protected:
                self._remove(path)

    def _remove_dead_temps(self):
        for name in os.listdir(self.work_dir):
            m = _TMP.match(name)
            if m and not _pid_alive(int(m.group(1))):
                self._remove(self.path(name))

    @staticmethod
    def _remove(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
