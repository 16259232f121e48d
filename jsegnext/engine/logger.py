"""Training logs: one JSON object per line (``log.jsonl``), written by rank 0 only."""

import json
import math
import os
import time
from pathlib import Path

from ..comm import is_main_process


def _plain(value):
    """JSON-safe: NumPy scalars/arrays to Python, NaN/inf to null (strict JSON has no NaN)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _keep(line, iteration):
    """Whether a log line survives a resume at ``iteration``: blank and cut-short lines do not, nor
    records of later iterations."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False
    return not isinstance(record, dict) or not isinstance(record.get("iter"), int) or record["iter"] <= iteration


def set_aside(path):
    """Move an earlier run's non-empty log at ``path`` beside itself, named after its last change
    (``log.jsonl`` -> ``log.20261201-203000.jsonl``, never over another file), so that a new run
    starts its own log and the old one is kept. Returns the new path, or None if there was none."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    target, n = path.with_name(f"{path.stem}.{stamp}{path.suffix}"), 1
    while target.exists():
        target, n = path.with_name(f"{path.stem}.{stamp}-{n}{path.suffix}"), n + 1
    os.replace(path, target)
    return target


class JsonlLogger:
    """Appends ``record`` dicts to ``path`` as JSON lines, flushed line by line; silent off rank 0.

    If a previous run was killed mid-line, the partial line is closed first so every later line
    parses. ``time_key`` adds a wall-clock timestamp to each record unless it already has one.
    """

    def __init__(self, path, time_key="timestamp"):
        self.path = os.fspath(path)
        self.time_key = time_key
        self._file = None
        if is_main_process():
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            needs_newline = False
            if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
                with open(self.path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    needs_newline = f.read(1) != b"\n"
            self._file = open(self.path, "a", encoding="utf-8")
            if needs_newline:
                self._file.write("\n")
                self._file.flush()

    def drop_after(self, iteration):
        """Remove the records of iterations after ``iteration`` (and a line cut short by a crash).

        Called on resume from a checkpoint of ``iteration``: the iterations run after it before a
        crash are run again, so without this the log would hold them twice. Atomic: the file is
        rewritten beside itself and moved into place. Returns the number of lines removed.
        """
        if self._file is None:
            return 0
        self._file.close()
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        kept = [line for line in lines if _keep(line, iteration)]
        if len(kept) != len(lines):
            tmp = f"{self.path}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in kept))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        self._file = open(self.path, "a", encoding="utf-8")
        return len(lines) - len(kept)

    def log(self, record):
        if self._file is None:
            return
        record = dict(record)
        if self.time_key and self.time_key not in record:
            record[self.time_key] = time.strftime("%Y-%m-%d %H:%M:%S")
        self._file.write(json.dumps(_plain(record), allow_nan=False) + "\n")
        self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
