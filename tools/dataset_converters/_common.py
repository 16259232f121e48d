"""Shared helpers for the dataset converters (no Jittor import here, on purpose).

What every converter gets from this module:

* :func:`track_map` - run one function over many tasks, in a process pool when
  ``nproc > 1``, with a tqdm progress bar.  A task that raises does not stop the
  run: the error is recorded against the task's input file (``task[0]``) and
  reported at the end.
* resumability - :func:`is_readable_image` tells whether an output that already
  exists can be skipped, and :func:`save_png` writes through a temporary file and
  an atomic rename, so an interrupted run never leaves a half-written output that
  looks finished.
* :func:`print_summary` - the closing table of counts against the official
  expected counts (a mismatch is a warning), the list of failed inputs, and the
  exit status (1 only when some input could not be converted).

Task functions return a :class:`Result` (``status`` is ``"done"`` or
``"skipped"``; ``stats`` are integer counters summed over all tasks, e.g. pixels
with an unknown colour, which the converters turn into warnings).
"""

import argparse
import gc
import multiprocessing
import os
import shutil
import sys
import traceback
from collections import Counter

import numpy as np
from PIL import Image
from tqdm import tqdm

DONE, SKIPPED, FAILED = "done", "skipped", "failed"
MAX_LISTED_FAILURES = 50


class Result:
    """What one task reports back to the parent process."""

    __slots__ = ("status", "stats", "error", "key", "payload")

    def __init__(self, status, stats=None, error=None, key=None, payload=None):
        self.status = status
        self.stats = dict(stats or {})
        self.error = error
        self.key = key
        self.payload = payload


class Report:
    """Aggregate of all task results of one :func:`track_map` call."""

    def __init__(self, desc=""):
        self.desc = desc
        self.counts = Counter()
        self.stats = Counter()
        self.failures = []  # (input, error message)
        self.payloads = []  # (key, payload) of tasks that returned one

    def add(self, res):
        self.counts[res.status] += 1
        self.stats.update(res.stats)
        if res.status == FAILED:
            self.failures.append((res.key, res.error))
        if res.payload is not None:
            self.payloads.append((res.key, res.payload))

    def merge(self, other):
        self.counts.update(other.counts)
        self.stats.update(other.stats)
        self.failures.extend(other.failures)
        self.payloads.extend(other.payloads)
        return self

    @property
    def done(self):
        return self.counts[DONE]

    @property
    def skipped(self):
        return self.counts[SKIPPED]

    @property
    def failed(self):
        return self.counts[FAILED]

    def line(self):
        return f"{self.desc}: {self.done} written, {self.skipped} skipped (already done), {self.failed} failed"


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------
def default_nproc():
    return max(1, min(8, os.cpu_count() or 1))


def add_common_args(parser, out_help="output root (default: the input root, like mmseg)"):
    parser.add_argument("-o", "--out-dir", default=None, help=out_help)
    parser.add_argument(
        "--nproc", type=int, default=default_nproc(), help="worker processes (default: min(8, CPU count)); 1 = no pool"
    )
    return parser


def make_parser(description):
    return argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def fail_usage(message):
    """Abort before any work: a missing input directory or file, not a per-file error."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def require_dir(path, what):
    if not os.path.isdir(path):
        fail_usage(f"{what} not found: {path}")
    return path


def require_file(path, what):
    if not os.path.isfile(path):
        fail_usage(f"{what} not found: {path}")
    return path


def warn(message):
    tqdm.write(f"WARNING: {message}", file=sys.stderr)


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------
def is_readable_image(path):
    """True when ``path`` exists and decodes completely (the skip-existing test)."""
    if not os.path.isfile(path):
        return False
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any decoder error means "redo it"
        return False


def _tmp_name(path):
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.{os.getpid()}.tmp")


def save_png(array, path):
    """Write ``array`` as a PNG via a temporary file + atomic rename.

    2-D uint8 arrays become single-channel (``L``) PNGs without a palette - the
    label format every converter writes; HxWx3 uint8 arrays become RGB PNGs.
    """
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"expected uint8, got {array.dtype} for {path}")
    if array.ndim not in (2, 3):
        raise ValueError(f"cannot write a {array.ndim}-D array as an image: {path}")
    img = Image.fromarray(array)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def atomic_write(path, writer):
    """Call ``writer(tmp_path)`` and rename the result onto ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = _tmp_name(path)
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def copy_file(src, dst):
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def write_list(path, names):
    """Write one name per line (the mmseg split-file format), atomically."""

    def writer(tmp):
        with open(tmp, "w") as f:
            f.writelines(f"{n}\n" for n in names)

    atomic_write(path, writer)


def read_list(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def link_dir(src, dst):
    """Make ``dst`` point at ``src`` (a symlink) when the output root differs from the
    input root, so the output is a complete data root without copying the images.
    An existing ``dst`` is left alone."""
    if not os.path.exists(src) or os.path.lexists(dst):
        return False
    if os.path.abspath(src) == os.path.abspath(dst):
        return False
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    try:
        os.symlink(os.path.abspath(src), dst, target_is_directory=True)
        print(f"linked {dst} -> {os.path.abspath(src)}")
        return True
    except OSError as e:  # e.g. no symlink permission on Windows
        warn(f"could not link {dst} -> {src} ({e}); copy that folder there yourself")
        return False


def same_path(a, b):
    return os.path.abspath(a) == os.path.abspath(b)


# --------------------------------------------------------------------------------------
# parallel map
# --------------------------------------------------------------------------------------
def _run_task(job):
    func, task = job
    key = str(task[0]) if isinstance(task, (tuple, list)) else str(task)
    try:
        res = func(task)
        if not isinstance(res, Result):
            res = Result(DONE if res is None else res)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - reported per input file
        msg = f"{type(e).__name__}: {e}"
        if os.environ.get("JSEGNEXT_CONVERTER_TRACEBACK"):
            msg += "\n" + traceback.format_exc()
        res = Result(FAILED, error=msg)
    res.key = key
    return res


def _pool_context():
    methods = multiprocessing.get_all_start_methods()
    # fork keeps converters loaded from a file path (tests, importlib) usable in workers
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def track_map(func, tasks, nproc=1, desc=""):
    """Apply ``func`` to every task (tuple whose first item names the input file).

    ``func`` must be a module-level function (picklable) when ``nproc > 1``.
    Returns a :class:`Report`.
    """
    tasks = list(tasks)
    report = Report(desc)
    if not tasks:
        return report
    jobs = [(func, t) for t in tasks]
    bar = tqdm(total=len(jobs), desc=desc, unit="file", dynamic_ncols=True, file=sys.stderr)
    try:
        if nproc <= 1 or len(jobs) == 1:
            for job in jobs:
                report.add(_run_task(job))
                bar.update()
        else:
            nproc = min(nproc, len(jobs))
            chunk = max(1, min(16, len(jobs) // (nproc * 8)))
            # keep forked workers from touching (and so copying) the parent's objects,
            # e.g. the multi-GB Pascal Context JSON, when their garbage collector runs
            gc.freeze()
            try:
                with _pool_context().Pool(nproc) as pool:
                    for res in pool.imap_unordered(_run_task, jobs, chunksize=chunk):
                        report.add(res)
                        bar.update()
            finally:
                gc.unfreeze()
    finally:
        bar.close()
    return report


# --------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------
def print_summary(title, rows, reports=(), notes=()):
    """Print the closing summary and return the exit status.

    rows: ``(what, got, expected)`` triples; ``expected`` None means "no official
    count".  A count that differs from the official one is a warning only.
    reports: the :class:`Report` objects of the run; any failed task makes the exit
    status 1 and is listed with its input file and error.
    notes: extra warning lines (e.g. unknown label values).
    """
    print(f"\n==== {title}: summary ====")
    for rep in reports:
        print("  " + rep.line())
    width = max([len(r[0]) for r in rows] + [10])
    mismatches = 0
    if rows:
        print(f"  {'':<{width}}  {'found':>9}  {'official':>9}")
    for what, got, expected in rows:
        flag = ""
        if expected is not None and got != expected:
            flag = "  <-- differs from the official count"
            mismatches += 1
        exp = "-" if expected is None else str(expected)
        print(f"  {what:<{width}}  {got:>9}  {exp:>9}{flag}")
    for note in notes:
        print(f"  WARNING: {note}")
    if mismatches:
        print(
            f"  WARNING: {mismatches} count(s) differ from the official release "
            "(expected for a partial download or a subset; otherwise check the input)."
        )
    failures = [f for rep in reports for f in rep.failures]
    if failures:
        print(f"  ERROR: {len(failures)} input file(s) could not be converted:")
        for key, err in sorted(failures)[:MAX_LISTED_FAILURES]:
            print(f"    {key}: {err}")
        if len(failures) > MAX_LISTED_FAILURES:
            print(f"    ... and {len(failures) - MAX_LISTED_FAILURES} more")
        print("  Re-run the same command after fixing them: finished outputs are skipped.")
        return 1
    print("  OK" + (" (with warnings)" if mismatches or notes else ""))
    return 0
