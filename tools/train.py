"""Train a SegNeXt model: ``python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] ...``.

Multi-process (CPU or GPU) with Jittor's MPI engine: ``mpirun -np 4 python tools/train.py CONFIG``;
the config's ``data.batch_size`` is the total over all processes.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsegnext.apis import load_config  # noqa: E402
from jsegnext.cli import one_line_errors  # noqa: E402
from jsegnext.engine.trainer import Trainer  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train SegNeXt (jsegnext)")
    parser.add_argument("config")
    parser.add_argument("--work-dir", help="default: work_dirs/<config name>")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        help="continue from CKPT, or from the work dir's latest checkpoint",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run even if the work dir holds another run's checkpoints "
        "(files of the same names are replaced; the others are kept)",
    )
    parser.add_argument("--load-from", help="initialise from a full segmentor checkpoint (fine-tuning)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


@one_line_errors
def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    work_dir = args.work_dir or str(Path("work_dirs") / Path(args.config).stem)
    trainer = Trainer(
        cfg, work_dir, seed=args.seed, load_from=args.load_from, progress=not args.no_progress, overwrite=args.overwrite
    )
    if args.resume:
        trainer.resume(None if args.resume == "latest" else args.resume)
    final = trainer.train()
    print(f"training finished: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
