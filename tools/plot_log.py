"""Draw training curves from ``log.jsonl`` files.

    python tools/plot_log.py work_dirs/RUN/log.jsonl [...] --out curves.png

One panel each for the training loss, the learning rate and the validation mIoU (and aAcc / mAcc),
against the iteration; several logs are drawn over each other, labelled by their folder name.
"""

import argparse
import json
import sys
from pathlib import Path


def read_log(path):
    """(train records, val records) of one log.jsonl; a malformed line is an error naming it."""
    train, val = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON line ({err.msg})") from None
            if record.get("mode") == "train":
                train.append(record)
            elif record.get("mode") == "val":
                val.append(record)
    return train, val


def plot(logs, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_lr, ax_val) = plt.subplots(1, 3, figsize=(15, 4))
    for path in logs:
        train, val = read_log(path)
        name = Path(path).parent.name or str(path)
        if train:
            iters = [r["iter"] for r in train]
            ax_loss.plot(iters, [r["loss"] for r in train], label=name)
            ax_lr.plot(iters, [r["lr"] for r in train], label=name)
        for key, style in (("mIoU", "o-"), ("aAcc", "s--"), ("mAcc", "^:")):
            if val:
                ax_val.plot([r["iter"] for r in val], [r[key] for r in val], style, label=f"{name} {key}")
    for ax, title in ((ax_loss, "training loss"), (ax_lr, "learning rate"), (ax_val, "validation (%)")):
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Plot loss, lr and mIoU curves from log.jsonl files")
    parser.add_argument("logs", nargs="+")
    parser.add_argument("--out", default="curves.png")
    args = parser.parse_args(argv)
    try:
        plot(args.logs, args.out)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
