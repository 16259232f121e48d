"""Reduced-precision inference of jsegnext: TF32 matrix products (``jt.flags.use_tensorcore=1``),
float16 and bfloat16 (parameters and input cast, ``jt.flags.auto_mixed_precision_level=5``), each
compared with the float32 logits of the same weights; a mode is timed only if its logits stay
within :data:`TOLERANCE`. PyTorch's ``autocast`` (fp16, bf16; channels-last, cudnn.benchmark) is
timed beside it for reference, with its own error against its float32 output.

Error: max |logits - logits_fp32| / max |logits_fp32| over the full-size logits; also reported,
the share of pixels whose argmax class is unchanged (random weights: small logit margins, so this
reads low before the max error does).

    python benchmarks/gpu/precision.py --out precision.jsonl [--smoke]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_speed import fix_bases, jsegnext_model, time_jittor, time_torch, torch, torch_model  # noqa: E402

from jsegnext.runtime import device_name, jt  # noqa: E402

#: Largest max relative error of the logits (vs float32) for which a mode counts as usable.
TOLERANCE = {"tf32": 5e-3, "float16": 1e-2, "bfloat16": 4e-2}
ROWS = [("t", 512, 512, 1), ("t", 1024, 2048, 1), ("b", 1024, 2048, 1)]


def _errors(out, ref):
    return dict(
        max_rel_err=float(np.abs(out - ref).max() / np.abs(ref).max()),
        argmax_agree=float((out.argmax(1) == ref.argmax(1)).mean()),
    )


def jittor_modes(variant, h, w, n, impl, emit):
    ref_model, cfg = jsegnext_model(variant, impl, tiny=False)
    head = cfg.model["decode_head"]
    fix_bases([ref_model], head["channels"], head["ham_kwargs"]["MD_R"])
    img = np.random.default_rng(0).standard_normal((n, 3, h, w)).astype(np.float32)
    ref_model.eval()
    with jt.no_grad():
        ref = ref_model.encode_decode(jt.array(img)).numpy()
    state = {k: v.numpy() for k, v in ref_model.state_dict().items()}
    for mode in ("tf32", "float16", "bfloat16"):
        row = dict(
            framework="jsegnext",
            impl=impl,
            variant=variant,
            shape=[h, w],
            batch=n,
            mode=mode,
            tolerance=TOLERANCE[mode],
        )
        flags = dict(use_tensorcore=1) if mode == "tf32" else dict(auto_mixed_precision_level=5)
        try:
            with jt.flag_scope(**flags):
                model, _ = jsegnext_model(variant, impl, tiny=False)
                model.load_state_dict(state)
                fix_bases([model], head["channels"], head["ham_kwargs"]["MD_R"])
                if mode != "tf32":
                    getattr(model, mode)()
                x = jt.array(img) if mode == "tf32" else jt.array(img).cast(mode)
                model.eval()
                with jt.no_grad():
                    out = model.encode_decode(x).float32().numpy()
                row.update(_errors(out, ref))
                row["status"] = "within" if row["max_rel_err"] <= TOLERANCE[mode] else "outside"
                if row["status"] == "within":

                    def step(m=model, x=x):
                        with jt.no_grad():
                            return m.encode_decode(x)

                    row["timing"] = time_jittor(step, 3, 10)
                    row["images_per_s"] = round(n * 1e3 / row["timing"]["mean"], 2)
        except Exception as exc:  # noqa: BLE001 - an unsupported mode is a result, not a crash
            row.update(status="failed", error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}")
        emit(row)
        jt.gc()


def torch_modes(variant, h, w, n, emit):
    model = torch_model(variant, False, "cuda").eval().to(memory_format=torch.channels_last)
    fix_bases([model], model.decode_head.hamburger.ham_in.conv.out_channels, model.decode_head.hamburger.ham.R)
    torch.backends.cudnn.benchmark = True
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((n, 3, h, w)).astype(np.float32)).cuda()
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model.forward_full(x).float().cpu().numpy()
    for mode, dtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        row = dict(framework="pytorch_autocast", variant=variant, shape=[h, w], batch=n, mode=mode)

        def step(dtype=dtype, model=model):
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
                return model.forward_full(x)

        try:
            row.update(_errors(step().float().cpu().numpy(), ref))
            row["timing"] = time_torch(step, 3, 10, cuda=True)
            row["images_per_s"] = round(n * 1e3 / row["timing"]["mean"], 2)
            row["status"] = "timed"
        except Exception as exc:  # noqa: BLE001
            row.update(status="failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")
        emit(row)
    del model
    torch.cuda.empty_cache()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument(
        "--impl", default="kernel", help="jsegnext strip_conv implementation (the CUDA kernel takes float16)"
    )
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    out = open(args.out, "a", buffering=1)

    def emit(row):
        out.write(json.dumps(row) + "\n")
        print(json.dumps({k: v for k, v in row.items() if k != "timing"}), flush=True)

    if device_name() != "cuda":
        emit(
            dict(
                status="skipped",
                reason="float16/bfloat16/TF32 need CUDA: Jittor's CPU matrix and convolution kernels take float32 only",
            )
        )
        return 0
    for variant, h, w, n in ROWS:
        jittor_modes(variant, h, w, n, args.impl, emit)
        if torch is not None and torch.cuda.is_available():
            torch_modes(variant, h, w, n, emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
