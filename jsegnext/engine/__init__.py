"""Training and evaluation: optimiser and schedule, checkpoints, metrics, logging, the loop."""

from .checkpoint import CheckpointManager, load_training_state, save_checkpoint
from .evaluation import evaluate, inference_context, overlay, predict
from .logger import JsonlLogger
from .metrics import IoUAccumulator, format_metrics_table
from .optim import PolyLrSchedule, build_optimizer, describe_param_groups
from .trainer import Trainer, TrainingDiverged

__all__ = [
    "CheckpointManager",
    "load_training_state",
    "save_checkpoint",
    "evaluate",
    "inference_context",
    "overlay",
    "predict",
    "JsonlLogger",
    "IoUAccumulator",
    "format_metrics_table",
    "PolyLrSchedule",
    "build_optimizer",
    "describe_param_groups",
    "Trainer",
    "TrainingDiverged",
]
