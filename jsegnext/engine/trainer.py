"""Iteration-based training with the reference SegNeXt recipe.

One loop, in order: learning rate for the iteration → loss → finite check → optimiser step →
log → checkpoint → validation. Everything needed to continue exactly (weights, optimiser
moments, iteration, RNG states, the data order) is in each checkpoint, so ``--resume`` after a
crash (even ``kill -9`` while a checkpoint was being written) continues as if never stopped.
"""

import math
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..comm import get_rank, is_main_process, mean_over_processes
from ..config_check import check_class_count, validate_config
from ..datasets import SeededSampler, build_dataloader, build_dataset
from ..errors import CheckpointError, ConfigError, JSegNeXtError
from ..models import build_segmentor
from ..runtime import jt
from ..weights import load_checkpoint
from .checkpoint import CheckpointManager, iteration_seed, load_training_state
from .evaluation import evaluate
from .logger import JsonlLogger, set_aside
from .optim import PolyLrSchedule, build_optimizer, describe_param_groups


class TrainingDiverged(JSegNeXtError, RuntimeError):
    """The loss became NaN/inf; the message names the checkpoint of the last good weights."""


def seed_everything(seed):
    """Seeds Python's, NumPy's and Jittor's generators, the same on every MPI rank.

    Identical seeds give every rank the same initial weights; Jittor's optimiser broadcasts rank 0's
    parameters only after the first gradients, which would otherwise mix different models.
    """
    jt.set_global_seed(seed, different_seed_for_mpi=False)


def _mean_over_ranks(loss):
    """The loss averaged over MPI ranks: what one process on the whole batch reports, and the same
    value on every rank, so a non-finite loss stops all of them together."""
    return float(mean_over_processes(loss.detach()).item())


def _log(message):
    if is_main_process():
        tqdm.write(message)


def prepare_work_dir(work_dir):
    """Create ``work_dir`` and make sure files can be written there, before any work is done."""
    work_dir = Path(work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        raise ConfigError(f"work dir {work_dir} is a file, not a folder; give another --work-dir")
    probe = work_dir / f".jsegnext-write-test-{os.getpid()}"
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"work dir {work_dir} is not writable ({err.strerror or err}); give another --work-dir"
        ) from None


class Trainer:
    """Training in ``work_dir``. A fresh run there refuses a work dir that holds checkpoints (of
    another run) unless ``overwrite``; :meth:`resume` continues the run they belong to."""

    def __init__(self, cfg, work_dir, seed=None, load_from=None, progress=True, overwrite=False):
        validate_config(cfg, training=True, warn=False)  # load_config warned already
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        prepare_work_dir(self.work_dir)
        self.seed = cfg.get("seed", 0) if seed is None else seed
        self.progress = progress and is_main_process()
        self.max_iters = int(cfg.runner.max_iters)
        self.overwrite = overwrite
        self.resumed = False
        seed_everything(self.seed)
        self.model = build_segmentor(cfg.model)
        self._initialise_weights(load_from)
        self.train_set = build_dataset(cfg.data.train, seed=self.seed)
        self.val_set = build_dataset(cfg.data.val) if cfg.data.get("val") else None
        for split, dataset in (("train", self.train_set), ("val", self.val_set)):
            if dataset is not None:
                check_class_count(self.model.num_classes, dataset, split)
        self.batch_size = int(cfg.data.batch_size)
        if len(self.train_set) < self.batch_size:
            raise ConfigError(
                f"the training set has {len(self.train_set)} images, fewer than data.batch_size={self.batch_size}"
            )
        try:
            self.optimizer = build_optimizer(self.model, cfg.optimizer)
            lr_cfg = {k: v for k, v in cfg.lr_config.items() if k != "policy"}
            self.schedule = PolyLrSchedule(self.optimizer, max_iters=self.max_iters, **lr_cfg)
        except (ValueError, NotImplementedError) as err:  # settings the optimiser or schedule refuse
            raise ConfigError(f"optimizer / lr_config: {err}") from None
        ckpt_cfg = cfg.get("checkpoint_config", {})
        self.ckpt_interval = int(ckpt_cfg.get("interval", self.max_iters))
        self.checkpoints = CheckpointManager(self.work_dir, max_keep=int(ckpt_cfg.get("max_keep_ckpts", 3)))
        self.eval_interval = int(cfg.get("evaluation", {}).get("interval", self.max_iters))
        # validation runs a fused inference copy of the model (never the model in training itself)
        self.eval_fuse = bool(cfg.get("evaluation", {}).get("fuse", True))
        self.log_interval = int(cfg.get("log_config", {}).get("interval", 50))
        self.logger = None  # opened by train(), once the work dir is known to be this run's
        self.iter = 0
        self.best_miou = -math.inf
        _log(describe_param_groups(self.optimizer))

    # ------------------------------------------------------------------ set-up
    def _initialise_weights(self, load_from):
        if load_from:
            report = load_checkpoint(self.model, load_from, require_head=True)
            _log(f"load_from {load_from}: {report.summary()}")
            return
        pretrained = self.cfg.get("pretrained")
        if not pretrained:
            _log("WARNING: no `pretrained` encoder weights in the config: training MSCAN from scratch")
            return
        if not os.path.exists(pretrained):
            raise ConfigError(
                f"pretrained encoder weights {pretrained!r} not found; download the ImageNet MSCAN weights "
                "(see README), or set `pretrained=None` to train from scratch"
            )
        report = load_checkpoint(self.model, pretrained)
        total = sum(1 for k in self.model.state_dict() if k.startswith("backbone."))
        _log(f"PRETRAINED {pretrained}: loaded {len(report.loaded)}/{total} encoder tensors; {report.summary()}")

    def resume(self, path=None):
        """Continue from ``path`` or the work dir's latest complete checkpoint, as the same run."""
        if path is None:
            path = self.checkpoints.latest()
        if path is None and os.path.lexists(self.checkpoints.path("latest.pkl")):
            path = self.checkpoints.path("latest.pkl")  # unusable: loading it says why (truncated, refused ...)
        if path is None:
            raise CheckpointError(f"--resume: no checkpoint in {self.work_dir} to resume from")
        meta = load_training_state(path, self.model, self.optimizer)
        if not isinstance(meta.get("iter"), int):
            raise CheckpointError(f"{path}: not a training checkpoint (no iteration in its meta)")
        self.iter = int(meta["iter"])
        self.best_miou = float(meta.get("best_mIoU", -math.inf))
        if meta.get("run_id"):
            self.checkpoints.run_id = meta["run_id"]  # the same run goes on: its old files rotate out
        self.resumed = True
        _log(f"resumed from {path} at iteration {self.iter}")
        return meta

    def _check_fresh_start(self):
        """A new run must not mix with, or delete, the checkpoints of another one in the work dir."""
        existing = self.checkpoints.existing()
        if existing and not self.overwrite:
            shown = ", ".join(existing[:4]) + (f", ... ({len(existing)} files)" if len(existing) > 4 else "")
            raise ConfigError(
                f"work dir {self.work_dir} already holds checkpoints of another run ({shown}); "
                "continue that run with --resume, or give another --work-dir "
                "(--overwrite starts a new run there anyway, replacing files of the same names)"
            )

    # ------------------------------------------------------------------ loop
    def _batches(self):
        """Endless (epoch, batch) stream positioned at ``self.iter``."""
        per_epoch = len(self.train_set) // self.batch_size
        epoch, skip = divmod(self.iter, per_epoch)
        loader = build_dataloader(
            self.train_set,
            self.batch_size,
            shuffle=True,
            drop_last=True,
            seed=self.seed,
            num_workers=int(self.cfg.data.get("num_workers", 0)),
        )
        while True:
            loader.set_epoch(epoch)
            loader.sampler = SeededSampler(loader, shuffle=True, start=skip * self.batch_size)
            for batch in loader:
                yield batch
            epoch, skip = epoch + 1, 0

    def _meta(self):
        return {"iter": self.iter, "best_mIoU": self.best_miou, "seed": self.seed, "config": self.cfg.to_dict()}

    def train(self):
        if not self.resumed:
            self._check_fresh_start()
        if self.logger is None and is_main_process():
            kept = None if self.resumed else set_aside(self.work_dir / "log.jsonl")
            if kept:
                _log(f"log.jsonl of an earlier run kept as {kept.name}; this run starts a new one")
            self.logger = JsonlLogger(self.work_dir / "log.jsonl")
            if self.resumed:  # the iterations after the checkpoint run again: log them once
                dropped = self.logger.drop_after(self.iter)
                if dropped:
                    _log(f"{dropped} log.jsonl records of iterations after {self.iter} removed (they are run again)")
        self.model.train()
        bar = tqdm(total=self.max_iters, initial=self.iter, desc="train", disable=not self.progress, dynamic_ncols=True)
        window, started = [], time.time()
        batches = self._batches()
        while self.iter < self.max_iters:
            batch = next(batches)
            # drop-path, dropout and NMF bases draw from a seed of (run seed, iteration, rank), so a
            # resumed run makes the same draws as one never stopped
            jt.set_seed(iteration_seed(self.seed, self.iter, get_rank()))
            lr = self.schedule.apply(self.iter)
            loss = self.model.loss(batch["img"], batch["gt_semantic_seg"], self.train_set.ignore_index)
            value = _mean_over_ranks(loss)
            if not math.isfinite(value):
                self._diverged(value)
            self.optimizer.step(loss)
            self.iter += 1
            window.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}")
            if self.iter % self.log_interval == 0 or self.iter == self.max_iters:
                self._log_train(window, lr, started)
                window, started = [], time.time()
            if self.iter % self.ckpt_interval == 0 or self.iter == self.max_iters:
                self._save(f"iter_{self.iter}.pkl")
            if self.val_set is not None and (self.iter % self.eval_interval == 0 or self.iter == self.max_iters):
                self.validate()
        bar.close()
        return self.checkpoints.latest()

    def _log_train(self, losses, lr, started):
        record = {
            "mode": "train",
            "iter": self.iter,
            "loss": float(np.mean(losses)),
            "lr": lr,
            "time": (time.time() - started) / max(len(losses), 1),
            "memory_mb": _memory_mb(),
        }
        if self.logger:
            self.logger.log(record)

    def _save(self, name):
        if is_main_process():
            self.checkpoints.save(name, self.model, self.optimizer, self._meta())

    def validate(self):
        metrics = evaluate(self.model, self.val_set, progress=self.progress, fuse=self.eval_fuse)
        record = {
            "mode": "val",
            "iter": self.iter,
            "mIoU": metrics["mIoU"],
            "aAcc": metrics["aAcc"],
            "mAcc": metrics["mAcc"],
        }
        _log(f"iter {self.iter}: mIoU {metrics['mIoU']:.2f}  aAcc {metrics['aAcc']:.2f}  mAcc {metrics['mAcc']:.2f}")
        if self.logger:
            self.logger.log(record)
        if metrics["mIoU"] > self.best_miou:
            self.best_miou = metrics["mIoU"]
            if is_main_process():
                self.checkpoints.save_best(f"best_mIoU_iter_{self.iter}.pkl", self.model, self.optimizer, self._meta())
        return metrics

    def _diverged(self, value):
        last = self.checkpoints.latest()
        self._save(f"iter_{self.iter}_before_nonfinite.pkl")
        raise TrainingDiverged(
            f"loss became {value} at iteration {self.iter + 1}; training stopped. The weights before this "
            f"step are saved as iter_{self.iter}_before_nonfinite.pkl; last periodic checkpoint: {last}. "
            "Lower the learning rate or check the data (labels outside the classes?)."
        )


def _memory_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None
