"""Training checkpoints: what a run saves to continue exactly, rotation, a crash-proof ``latest``.

File format: jsegnext's (:mod:`jsegnext.checkpoint_io`: safetensors for the arrays, JSON for the
rest; no code can be stored in it), holding

    {'meta': {'iter', 'run_id', 'rng': {...}, ...}, 'state_dict': {name: array}, 'optimizer': {...}}

* ``state_dict``: every Var of ``model.state_dict()`` (parameters and BN statistics).
* ``optimizer``: the optimiser's step count and its per-parameter buffers (AdamW ``m`` and
  ``values`` = exp_avg / exp_avg_sq; SGD ``values`` = momentum), group by group, with the
  parameter names of each group so a mismatch is reported by name. Learning rates are not
  restored: they come from the config and the schedule, recomputed every iteration.
* ``meta``: what the caller passes (iteration, best mIoU, config ...), ``run_id`` (see below) and
  ``rng``: Python ``random`` and NumPy global generator states, and Jittor's seed
  (``jt.get_seed()``). Jittor exposes no way to read or restore the position of its generator's
  stream: restoring re-seeds it with that seed. Exact continuation of Jittor randomness (drop
  path, dropout, NMF bases) therefore needs the trainer to re-seed Jittor deterministically (e.g.
  from (seed, iteration) at every iteration, see :func:`iteration_seed`).

Checkpoints written by older jsegnext (Jittor's pickle ``.pkl``) still load and resume, through
the same restricted reader.

Runs: every checkpoint records the ``run_id`` of the run that wrote it (new for a fresh start,
kept by ``--resume``). A :class:`CheckpointManager` deletes only files of its own run (rotation of
``iter_N.pkl``, the previous best), and :meth:`~CheckpointManager.latest` resumes the run
``latest.pkl`` belongs to; files of other runs (and older files without a run id) are never
deleted. Starting a fresh run in a work dir that holds checkpoints is refused by the trainer.

Crash safety (``kill -9`` at any instant, power loss):

* a checkpoint is written to a hidden temporary file in the same directory
  (``.iter_N.pkl.tmp-<pid>``), flushed and fsync'ed, then renamed over the final name with
  ``os.replace`` (atomic on POSIX), and the directory is fsync'ed; a reader never sees a partial
  ``iter_N.pkl``, and leftovers of dead writers are deleted at the next save;
* ``latest.pkl`` is a relative symlink to the newest periodic checkpoint, itself replaced
  atomically (new symlink under a temporary name + ``os.replace``), and only after the target
  is complete; it is loadable directly like mmcv's ``latest.pth``. A regular file there (a copy)
  is accepted too, by ``--resume`` and by the manager (which moves it to its ``iter_N.pkl`` name
  before pointing the link, so it is not lost);
* :meth:`CheckpointManager.latest` does not trust the link blindly: it returns the newest
  complete checkpoint (checksum verified) of that run, so a dangling link, a truncated or
  hand-copied file, or a file system without symlinks still resumes from the last good state;
* old checkpoints are deleted (``max_keep``) only after the new one and the link are in place.
"""

import os
import random
import re
import time
import uuid

import numpy as np

from .. import checkpoint_io
from ..errors import CheckpointError
from ..runtime import jt
from ..weights import load_state

LATEST = "latest.pkl"
_PERIODIC = re.compile(r"^iter_(\d+)\.pkl$")
_ITER_NAME = re.compile(r"^iter_(\d+)(?:_[^/]*)?\.pkl$")
_BEST = re.compile(r"^best_.*\.pkl$")
_CHECKPOINT = re.compile(r"^(iter_\d+.*|latest|best_.*)\.pkl$")
_TMP = re.compile(r"^\.((?:iter_\d+.*|latest|best_.*)\.pkl)\.tmp-(\d+)$")

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "save_checkpoint",
    "read_training_checkpoint",
    "load_training_state",
    "is_complete_checkpoint",
    "rng_state",
    "restore_rng_state",
    "iteration_seed",
    "optimizer_state",
    "load_optimizer_state",
    "new_run_id",
]

is_complete_checkpoint = checkpoint_io.is_complete


def new_run_id():
    return uuid.uuid4().hex[:12]


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
        np.random.set_state(tuple(state["numpy"]))
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


def _buffer_keys(group):
    """Keys of per-parameter optimiser buffers in a Jittor param group (lists aligned with params)."""
    n = len(group["params"])
    return sorted(
        k
        for k, v in group.items()
        if k not in ("params", "grads", "param_names")
        and isinstance(v, list)
        and len(v) == n
        and all(isinstance(x, jt.Var) for x in v)
    )


def optimizer_state(optimizer):
    """Step count and per-parameter buffers of a Jittor optimiser, as NumPy."""
    groups = []
    for group in optimizer.param_groups:
        groups.append(
            {
                "param_names": list(group.get("param_names", [])),
                "shapes": [tuple(p.shape) for p in group["params"]],
                "buffers": {k: [v.numpy() for v in group[k]] for k in _buffer_keys(group)},
                "hyper": {
                    k: group[k]
                    for k in ("lr", "initial_lr", "weight_decay", "lr_mult", "decay_mult", "custom_key")
                    if k in group
                },
            }
        )
    return {"type": type(optimizer).__name__, "n_step": int(optimizer.n_step), "groups": groups}


def load_optimizer_state(optimizer, state, source="checkpoint"):
    """Restore :func:`optimizer_state` into an optimiser built the same way (same groups, same params)."""
    kind = type(optimizer).__name__
    if state.get("type") != kind:
        raise CheckpointError(f"{source}: optimizer state is for {state.get('type')}, not {kind}")
    saved = state["groups"]
    if len(saved) != len(optimizer.param_groups):
        raise CheckpointError(
            f"{source}: optimizer has {len(saved)} parameter groups in the checkpoint, "
            f"{len(optimizer.param_groups)} now (another model or paramwise_cfg?)"
        )
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
            raise CheckpointError(
                f"{source}: optimizer group {i} has buffers {sorted(old['buffers'])}, expected {keys}"
            )
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
    obj = {"meta": meta, "state_dict": model_state_numpy(model)}
    if optimizer is not None:
        obj["optimizer"] = optimizer_state(optimizer)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return checkpoint_io.save(path, obj)


def read_training_checkpoint(path):
    """A checkpoint file as a dict with ``state_dict`` and ``meta`` (``optimizer`` when saved);
    :class:`CheckpointError` naming the file if it is missing, truncated, corrupt, refused or not a
    checkpoint."""
    path = os.fspath(path)
    obj = checkpoint_io.load(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a jsegnext checkpoint (no 'state_dict' inside)")
    if not isinstance(obj.get("meta"), dict):
        obj["meta"] = {}
    return obj


def load_training_state(path, model, optimizer=None, restore_rng=True):
    """Resume: load weights, optimiser state and RNG states from ``path``; return its ``meta``."""
    ckpt = read_training_checkpoint(path)
    load_state(model, ckpt["state_dict"], source=os.fspath(path))
    if optimizer is not None:
        if "optimizer" not in ckpt:
            raise CheckpointError(
                f"{path}: holds no optimizer state, cannot resume training from it "
                "(use it as load_from to start a new run from these weights)"
            )
        load_optimizer_state(optimizer, ckpt["optimizer"], source=os.fspath(path))
    meta = ckpt["meta"]
    if restore_rng:
        restore_rng_state(meta.get("rng"))
    return meta


# ---------------------------------------------------------------------------------- manager
def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def checkpoint_meta(path):
    """``meta`` of a checkpoint file: from the header alone for jsegnext files, else the whole file;
    None when unreadable."""
    info = checkpoint_io.read_metadata(path)
    if info is not None:
        return info.get("meta") or {}
    try:
        return read_training_checkpoint(path)["meta"]
    except CheckpointError:
        return None


def run_of(path):
    """The run id recorded in a jsegnext checkpoint (header only), or None (older files, others)."""
    info = checkpoint_io.read_metadata(path)
    return (info.get("meta") or {}).get("run_id") if info else None


class CheckpointManager:
    """Checkpoints of one run in ``work_dir``: ``iter_N.pkl`` (the newest ``max_keep`` kept;
    ``max_keep <= 0`` keeps all), ``latest.pkl`` -> newest periodic one, ``best_*.pkl`` (one kept).
    Deletes only files of its own run (``run_id``). Call from one process only (rank 0)."""

    def __init__(self, work_dir, max_keep=3, run_id=None):
        self.work_dir = os.fspath(work_dir)
        self.max_keep = int(max_keep)
        self.run_id = run_id or new_run_id()

    def path(self, name):
        return os.path.join(self.work_dir, name)

    def _names(self):
        try:
            return sorted(os.listdir(self.work_dir))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def periodic(self):
        """[(iteration, path)] of the ``iter_N.pkl`` files present (any run), oldest first."""
        return sorted((int(m.group(1)), self.path(n)) for n in self._names() for m in [_PERIODIC.match(n)] if m)

    def existing(self):
        """Names of the checkpoint files in the work dir (``iter_*``, ``latest``, ``best_*`` ``.pkl``)."""
        return [n for n in self._names() if _CHECKPOINT.match(n) and os.path.lexists(self.path(n))]

    def save(self, name, model, optimizer=None, meta=None):
        """Write ``name`` (e.g. ``iter_16000.pkl``), point ``latest.pkl`` at it, prune old ones of this run."""
        path = save_checkpoint(self.path(name), model, optimizer, self._with_run(meta))
        self._point_latest(name)
        self._prune(keep=name)
        self._remove_dead_temps()
        return path

    def save_best(self, name, model, optimizer=None, meta=None):
        """Write ``name`` (e.g. ``best_mIoU_iter_16000.pkl``), then delete this run's previous best."""
        path = save_checkpoint(self.path(name), model, optimizer, self._with_run(meta))
        for other in self._names():
            if other != name and _BEST.match(other) and run_of(self.path(other)) == self.run_id:
                self._remove(self.path(other))
        return path

    def latest(self):
        """Path of the newest complete checkpoint to resume from, or None (see the module docstring)."""
        link = self.path(LATEST)
        candidates = {}  # path -> iteration
        for it, path in self.periodic():
            candidates[path] = it
        head = None
        if os.path.islink(link):
            m = _ITER_NAME.match(os.path.basename(os.readlink(link)))
            if m:
                head = self.path(os.path.basename(os.readlink(link)))
                candidates.setdefault(head, int(m.group(1)))
        elif os.path.isfile(link):  # a copy, not a link: its iteration is in its meta
            meta = checkpoint_meta(link)
            if meta is not None and isinstance(meta.get("iter"), int):
                head = link
                candidates[link] = meta["iter"]
        complete = {}

        def ok(path):
            if path not in complete:
                complete[path] = is_complete_checkpoint(path)
            return complete[path]

        if head is not None and os.path.exists(head) and ok(head):
            run = run_of(head)
        else:  # no usable latest.pkl: the run of the most recently written complete checkpoint
            by_time = sorted(candidates, key=lambda p: os.path.getmtime(p) if os.path.exists(p) else 0, reverse=True)
            newest = next((p for p in by_time if os.path.exists(p) and ok(p)), None)
            if newest is None:
                return None
            run = run_of(newest)
        ours = [p for p in candidates if run_of(p) == run]
        for path in sorted(ours, key=lambda p: (candidates[p], p != link), reverse=True):
            if os.path.exists(path) and ok(path):
                return path
        return None

    def best(self):
        names = [n for n in self._names() if _BEST.match(n) and run_of(self.path(n)) == self.run_id]
        return self.path(names[-1]) if names else None

    # ------------------------------------------------------------------ internals
    def _with_run(self, meta):
        meta = dict(meta or {})
        meta["run_id"] = self.run_id
        return meta

    def _point_latest(self, name):
        link = self.path(LATEST)
        if os.path.isfile(link) and not os.path.islink(link):
            if not self._keep_regular_latest(link):
                return  # an unreadable file there is left alone; latest() finds the checkpoints without it
        tmp = checkpoint_io.temp_name(link)
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(name, tmp)
            os.replace(tmp, link)
            checkpoint_io.fsync_dir(self.work_dir)
        except OSError:
            # no symlinks here (some network / FUSE file systems): latest() finds the newest
            # complete iter_N.pkl by itself
            if os.path.lexists(tmp):
                self._remove(tmp)

    def _keep_regular_latest(self, link):
        """A regular ``latest.pkl`` (a copy) is a checkpoint: move it to its ``iter_N.pkl`` name unless
        that exists. False when it cannot be read (then it stays where it is)."""
        meta = checkpoint_meta(link)
        if meta is None or not isinstance(meta.get("iter"), int):
            return False
        target = self.path(f"iter_{meta['iter']}.pkl")
        if not os.path.lexists(target):
            os.replace(link, target)
        return True

    def _prune(self, keep):
        if self.max_keep <= 0:
            return
        ours = [(it, path) for it, path in self.periodic() if run_of(path) == self.run_id]
        protected = {self.path(keep)}
        link = self.path(LATEST)
        if os.path.islink(link):
            protected.add(self.path(os.path.basename(os.readlink(link))))
        for _, path in ours[: -self.max_keep] if len(ours) > self.max_keep else []:
            if path not in protected:
                self._remove(path)

    def _remove_dead_temps(self):
        for name in self._names():
            m = _TMP.match(name)
            if m and not _pid_alive(int(m.group(2))):
                self._remove(self.path(name))

    @staticmethod
    def _remove(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
