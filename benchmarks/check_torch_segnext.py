"""Check the PyTorch SegNeXt of ``torch_segnext.py`` (the benchmarks' PyTorch column).

1. Reference fixture: loads ``segnext_t_ade.pth`` strictly, feeds ``segnext_t_ade_input.npy`` with the
   fixed NMF bases, compares the four backbone stages, NMF2D in/out, the stride-8 head logits and the
   sub-sampled full-size logits with the ``.npy`` files written by the authors' PyTorch code.
2. jsegnext: the same checkpoint, input and bases through the Jittor model; compares every output.
3. Training mode (dropout and drop path off so both are deterministic): batch statistics in BN,
   6 NMF steps, unrolled NMF gradient; compares the loss and every parameter gradient with Jittor's
   (``grad_worst``: the worst parameter; the stem / patch-embed conv biases feed a training-mode BN,
   so their true gradient is 0 — ``bn_fed_bias_grad`` is their largest |gradient| over the largest
   gradient of the model, rounding noise).
4. Training mode with dropout / drop path on: ``loss.backward()`` runs and gives finite gradients.

Errors are max |a − b| / max |b| per array. Exits 1 if any exceeds ``--tol`` (default 1e-3).

    python benchmarks/check_torch_segnext.py [--fixtures DIR] [--strip-conv auto] [--tol 1e-3]
"""

import argparse
import os
import re
import sys
from pathlib import Path

import numpy as np
import torch  # noqa: E402  (after jsegnext)

import jsegnext  # noqa: F401  (sets FIX_TORCH_ERROR=0 etc. before Jittor, and before torch, load)
from jsegnext.models import build_segmentor
from jsegnext.runtime import jt
from jsegnext.weights import load_state

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_segnext import VARIANTS, build_torch_segnext, load_reference_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = Path(os.environ.get("JSEGNEXT_FIXTURES", ROOT.parent / "shared" / "fixtures"))
IGNORE_INDEX = 255
#: Conv biases directly followed by BatchNorm (stem and patch embeddings).
BN_FED_BIAS = re.compile(r"backbone\.patch_embed\d\.proj(\.0|\.3)?\.bias")


def rel_err(out, ref):
    out, ref = np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"shape mismatch: {out.shape} vs {ref.shape}")
    return float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30))


def to_numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x.numpy()


# ----------------------------------------------------------------------------- model helpers
def jittor_cfg(
    variant="t",
    num_classes=150,
    strip_conv="auto",
    dropout_ratio=0.1,
    drop_path_rate=0.0,
    grad_mode="unrolled",
    **overrides,
):
    """The jsegnext model config matching ``build_torch_segnext`` with the same arguments."""
    s = dict(VARIANTS[variant], **overrides)
    return dict(
        backbone=dict(
            embed_dims=list(s["embed_dims"]),
            depths=list(s["depths"]),
            mlp_ratios=list(s["mlp_ratios"]),
            drop_path_rate=drop_path_rate,
            strip_conv=strip_conv,
        ),
        decode_head=dict(
            in_channels=list(s["embed_dims"][1:]),
            in_index=[1, 2, 3],
            channels=s["channels"],
            ham_channels=s["channels"],
            num_classes=num_classes,
            dropout_ratio=dropout_ratio,
            norm_groups=32,
            ham_kwargs=dict(MD_R=s["rank"], train_steps=6, eval_steps=7, grad_mode=grad_mode),
        ),
    )


def torch_state_numpy(model):
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def jittor_from_torch(torch_model, cfg):
    """A jsegnext segmentor holding ``torch_model``'s weights (strict: every key must match)."""
    model = build_segmentor(cfg)
    load_state(model, torch_state_numpy(torch_model), source="torch model")
    return model


def fix_bases(torch_model, jittor_model, bases):
    """Give both models' NMF2D the same initial bases (array (1, D, R), repeated over the batch)."""
    bases = np.asarray(bases, dtype=np.float32)
    torch_model.set_nmf_bases(bases)
    if jittor_model is not None:
        jittor_model.decode_head.hamburger.ham._build_bases = lambda B, S, D, R: jt.array(
            np.repeat(bases, B * S // bases.shape[0], axis=0)
        )


def randomize_(model, seed=0):
    """Make random weights sensitive (as the fixture does): non-trivial norm affines, biases, layer
    scales and BN running statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "layer_scale" in name:
                p.copy_(torch.rand(p.shape, generator=g) * 0.45 + 0.05)
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:  # BN / GN / LN weights
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return model


def nmf_bases(channels, rank, seed=0):
    b = np.random.default_rng(seed).random((1, channels, rank)).astype(np.float32)
    return b / np.linalg.norm(b, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- comparisons
def eval_outputs_torch(model, img):
    """Backbone stages, NMF2D input/output, stride-8 logits and full-size logits (eval mode)."""
    captured = {}
    ham = model.decode_head.hamburger.ham
    handle = ham.register_forward_hook(lambda m, inp, out: captured.update(ham_in=inp[0], ham_out=out))
    try:
        with torch.no_grad():
            x = torch.from_numpy(img)
            feats = model.encoder_features(x)
            head = model.decode_head(feats)
            full = torch.nn.functional.interpolate(head, size=x.shape[2:], mode="bilinear", align_corners=False)
            full_direct = model.forward_full(x)
    finally:
        handle.remove()
    out = {f"feats_{i}": to_numpy(f) for i, f in enumerate(feats)}
    out.update(
        ham_in=to_numpy(captured["ham_in"]),
        ham_out=to_numpy(captured["ham_out"]),
        head_logits=to_numpy(head),
        full=to_numpy(full),
        full_direct=to_numpy(full_direct),
    )
    return out


def eval_outputs_jittor(model, img):
    x = jt.array(img)
    feats = model.extract_feat(x)
    head = model.decode_head(feats)
    out = {f"feats_{i}": f.numpy() for i, f in enumerate(feats)}
    out.update(head_logits=head.numpy(), full=model.encode_decode(x).numpy())
    return out


def compare_with_fixture(outputs, fixtures):
    errors = {}
    for i in range(4):
        errors[f"feats_{i}"] = rel_err(outputs[f"feats_{i}"], np.load(fixtures / f"segnext_t_ade_feats_{i}.npy"))
    errors["ham_in"] = rel_err(outputs["ham_in"], np.load(fixtures / "segnext_t_ade_ham_in.npy"))
    errors["ham_out"] = rel_err(outputs["ham_out"], np.load(fixtures / "segnext_t_ade_ham_out.npy"))
    errors["head_logits"] = rel_err(outputs["head_logits"], np.load(fixtures / "segnext_t_ade_head_logits.npy"))
    sub = np.load(fixtures / "segnext_t_ade_logits_sub.npz")
    for key in ("full", "full_direct"):
        if tuple(outputs[key].shape) != tuple(sub["shape"]):
            raise ValueError(f"{key}: shape {outputs[key].shape} vs fixture {tuple(sub['shape'])}")
        errors[f"{key}_sub"] = rel_err(outputs[key][:, :, sub["rows"]][:, :, :, sub["cols"]], sub["logits"])
    return errors


def compare_outputs(a, b):
    return {k: rel_err(a[k], b[k]) for k in b if k in a}


def train_step_torch(model, img, label):
    model.train()
    model.zero_grad(set_to_none=True)
    loss = model.loss(torch.from_numpy(img), torch.from_numpy(label.astype(np.int64)))
    loss.backward()
    grads = {n: to_numpy(p.grad) for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.item()), grads


def train_step_jittor(model, img, label):
    model.train()
    loss = model.loss(jt.array(img), jt.array(label.astype(np.int32)))
    names, params = zip(
        *[(n, p) for n, p in model.named_parameters() if not n.endswith(("running_mean", "running_var"))]
    )
    grads = jt.grad(loss, list(params))
    return float(loss.item()), {n: g.numpy() for n, g in zip(names, grads)}


def compare_training(torch_model, jittor_model, img, label):
    """Loss and per-parameter gradient errors (Torch vs Jittor), training mode."""
    t_loss, t_grads = train_step_torch(torch_model, img, label)
    j_loss, j_grads = train_step_jittor(jittor_model, img, label)
    missing = sorted(set(t_grads) ^ set(j_grads))
    if missing:
        raise ValueError(f"parameters with a gradient in only one framework: {missing[:5]}")
    # conv biases feeding a training-mode BN have a true gradient of 0 (the batch mean absorbs them):
    # both frameworks give rounding noise there, so check that it is tiny instead of a relative error
    before_bn = {n for n in t_grads if BN_FED_BIAS.fullmatch(n)}
    scale = max(np.abs(g).max() for g in t_grads.values())
    errs = {n: rel_err(j_grads[n], t_grads[n]) for n in t_grads if n not in before_bn}
    worst = max(errs, key=errs.get)
    noise = max(max(np.abs(t_grads[n]).max(), np.abs(j_grads[n]).max()) for n in before_bn) / scale
    return (
        {"loss": abs(t_loss - j_loss) / abs(t_loss), "grad_worst": errs[worst], "bn_fed_bias_grad": noise},
        worst,
        t_loss,
        j_loss,
    )


def random_batch(shape, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.standard_normal(shape).astype(np.float32)
    label = rng.integers(0, num_classes, (shape[0],) + tuple(shape[2:]))
    label[:, : shape[2] // 4] = IGNORE_INDEX
    return img, label


def smoke_backward(model, img, label):
    """Training forward + backward with dropout / drop path as configured; returns (loss, all grads finite)."""
    model.train()
    model.zero_grad(set_to_none=True)
    loss = model.loss(torch.from_numpy(img), torch.from_numpy(label.astype(np.int64)))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    ok = all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().max() > 0 for g in grads)
    return float(loss.item()), bool(ok)


# ----------------------------------------------------------------------------- main
def report(title, errors, tol):
    print(title)
    bad = []
    for k, v in errors.items():
        flag = "" if v <= tol else "   <-- exceeds tolerance"
        print(f"  {k:<16s} {v:.3e}{flag}")
        if not v <= tol:
            bad.append(f"{title.split(':')[0]} {k}")
    return bad


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    p.add_argument("--strip-conv", default="auto", help="jsegnext MSCA strip implementation (default auto)")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--train-size", default="64x64", help="H×W of the training-mode comparison batch (batch 2)")
    args = p.parse_args(argv)
    fx = args.fixtures
    torch.manual_seed(0)
    failures = []

    img = np.load(fx / "segnext_t_ade_input.npy")
    bases = np.load(fx / "segnext_t_ade_bases.npy")
    t_model = build_torch_segnext("t", num_classes=150)
    print(
        f"torch {torch.__version__}, jittor {jt.__version__} ({jsegnext.device_name()}), "
        f"load_state_dict(strict=True): {load_reference_checkpoint(t_model, fx / 'segnext_t_ade.pth')}"
    )
    t_model.eval()
    fix_bases(t_model, None, bases)
    t_out = eval_outputs_torch(t_model, img)
    failures += report("torch vs reference fixture (eval, 1x3x256x320):", compare_with_fixture(t_out, fx), args.tol)

    j_model = build_segmentor(jittor_cfg("t", strip_conv=args.strip_conv))
    from jsegnext.weights import load_checkpoint

    load_checkpoint(j_model, fx / "segnext_t_ade.pth", require_head=True)
    j_model.eval()
    fix_bases(t_model, j_model, bases)
    j_out = eval_outputs_jittor(j_model, img)
    failures += report(
        f"torch vs jsegnext (eval, strip_conv={args.strip_conv}):", compare_outputs(j_out, t_out), args.tol
    )

    # training mode, deterministic (no dropout, no drop path): BN batch statistics, 6 NMF steps, gradients
    h, w = (int(v) for v in args.train_size.split("x"))
    t_train = build_torch_segnext("t", num_classes=150, dropout_ratio=0.0)
    load_reference_checkpoint(t_train, fx / "segnext_t_ade.pth")
    j_train = jittor_from_torch(t_train, jittor_cfg("t", strip_conv=args.strip_conv, dropout_ratio=0.0))
    fix_bases(t_train, j_train, bases)
    timg, tlabel = random_batch((2, 3, h, w), 150)
    errs, worst, t_loss, j_loss = compare_training(t_train, j_train, timg, tlabel)
    failures += report(
        f"torch vs jsegnext (train, 2x3x{h}x{w}, loss {t_loss:.5f} / {j_loss:.5f}, worst gradient {worst}):",
        errs,
        args.tol,
    )

    # training mode with dropout and drop path: backward works
    t_drop = build_torch_segnext("t", num_classes=150, drop_path_rate=0.1)
    load_reference_checkpoint(t_drop, fx / "segnext_t_ade.pth")
    loss, ok = smoke_backward(t_drop, timg, tlabel)
    print(
        f"torch train forward+backward with dropout 0.1 / drop path 0.1, random bases: loss {loss:.4f}, "
        f"gradients finite and non-zero: {ok}"
    )
    if not ok:
        failures.append("backward")

    if failures:
        print("FAILED:", ", ".join(failures))
        return 1
    print(f"OK: every error <= {args.tol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
