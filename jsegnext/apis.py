"""High-level entry points: build a model from a config and a checkpoint."""
from .config import Config
from .models import build_segmentor
from .weights import load_checkpoint


def load_config(config, options=None):
    """A Config from a path or an existing Config/dict, with ``key=value`` overrides applied."""
    cfg = Config.fromfile(config) if isinstance(config, str) or hasattr(config, "__fspath__") else Config(config)
    return cfg.merge_options(options)


def init_model(config, checkpoint=None, options=None, allow_partial=False):
    """Build the config's segmentor in eval mode and load ``checkpoint`` (our ``.pkl`` or a reference ``.pth``).

    A checkpoint that does not fit (wrong variant or class count, truncated file, not a
    checkpoint) raises ``jsegnext.weights.CheckpointError`` naming the file and the problem.
    """
    cfg = load_config(config, options)
    model = build_segmentor(cfg.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, allow_partial=allow_partial, require_head=True)
    model.cfg = cfg
    model.eval()
    return model
