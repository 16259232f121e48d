"""Timing and reporting helpers of the operator benchmarks (bench_strip_conv.py, bench_depthwise.py).

Times are per call in milliseconds, ``jt.sync_all(True)`` before and after each timed call, warm-up
calls (which include JIT compilation) excluded.
"""

import json
import os
import sys
import time


def add_arguments(parser, iters, warmup):
    """The options every operator benchmark has."""
    parser.add_argument("--iters", type=int, default=iters)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--stat", default="median", choices=["median", "min"], help="statistic shown in the tables")
    parser.add_argument("--threads", type=int, default=None, help="set OMP_NUM_THREADS before Jittor starts")
    parser.add_argument(
        "--json", default=None, help="also write all results (median and min) to this file ('-': stdout)"
    )


def start(args):
    """Apply ``--threads`` (before Jittor starts), make the repository importable, and return the
    parsed ``--input`` size (H, W)."""
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    return tuple(int(v) for v in args.input.lower().split("x"))


def timer(jt, fn, iters, warmup):
    """Median and minimum milliseconds of ``fn()`` over ``iters`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    jt.sync_all(True)
    times = []
    for _ in range(iters):
        jt.sync_all(True)
        t0 = time.perf_counter()
        fn()
        jt.sync_all(True)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median": times[len(times) // 2], "min": times[0]}


def forward_and_backward(jt, forward, inputs, gy, iters, warmup):
    """Times of ``forward()`` ('fwd') and of it plus ``jt.grad((y * gy).sum(), inputs)`` ('fwd_bwd')."""

    def fwd():
        forward().sync()

    def fwd_bwd():
        y = forward()
        jt.sync(jt.grad((y * gy).sum(), inputs))

    return {"fwd": timer(jt, fwd, iters, warmup), "fwd_bwd": timer(jt, fwd_bwd, iters, warmup)}


def write_json(results, path):
    """Write ``results`` to ``path`` ('-': stdout); nothing without a path."""
    if not path:
        return
    text = json.dumps(results, indent=1)
    if path == "-":
        print(text)
    else:
        with open(path, "w") as f:
            f.write(text)
