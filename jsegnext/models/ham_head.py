"""LightHamHead: the Hamburger decoder of SegNeXt with NMF2D matrix decomposition."""

import numpy as np

from ..ops.pointwise import matmul
from ..runtime import jt
from .layers import Conv1x1, ConvModule, resize_bilinear

nn = jt.nn

GRAD_MODES = ("unrolled", "one_step")


def _mm(a, b, trans_a=False, trans_b=False):
    """Matrix product of 2-D ``op(a)`` and ``op(b)`` (MKL on CPU, with the transposes as its flags)."""
    return matmul(a, b, trans_a, trans_b)


class NMF2D(nn.Module):
    """Non-negative matrix factorisation of a (B, C, H, W) map into rank-``MD_R`` bases.

    ``x`` is seen as ``B·S`` matrices of shape (D = C/S, N = H·W). Bases are drawn from U[0, 1)
    and L2-normalised over D on every forward (``rand_init=True``, the reference's choice), then
    refined by multiplicative updates: ``train_steps`` while training, ``eval_steps`` in eval.

    ``grad_mode='unrolled'`` back-propagates through every update (the reference PyTorch code);
    ``'one_step'`` runs the updates without gradient and differentiates only the last
    coefficient update (HamNet's one-step gradient, as in JSeg).
    ``seed`` makes the bases repeatable: every sample of every forward then starts from the same
    (S, D, R) set (:meth:`seeded_bases`), so a sample's result depends neither on the batch it is
    in nor on its place there. An exported ONNX graph holds that set as a constant.
    ``eta`` is accepted and unused: mmsegmentation 1.x's NMF2D takes it (a step size that its
    multiplicative updates never use), so configs written for it load unchanged.
    """

    def __init__(
        self,
        MD_S=1,
        MD_R=64,
        train_steps=6,
        eval_steps=7,
        inv_t=1,
        eta=0.9,
        rand_init=True,
        grad_mode="unrolled",
        seed=None,
    ):
        super().__init__()
        if grad_mode not in GRAD_MODES:
            raise ValueError(f"NMF2D grad_mode must be one of {GRAD_MODES}, got {grad_mode!r}")
        self.S, self.R = MD_S, MD_R
        self.is_train = True  # Jittor sets it on train()/eval(); start in training mode
        self.train_steps, self.eval_steps = train_steps, eval_steps
        self.inv_t = inv_t
        self.rand_init = rand_init
        self.grad_mode = grad_mode
        self.seed = seed
        self._fixed_bases = None

    def _build_bases(self, B, S, D, R):
        """Initial bases, shape (B·S, D, R), non-negative and L2-normalised over D."""
        if self.seed is not None:
            return jt.array(np.tile(self.seeded_bases(D), (B, 1, 1))).stop_grad()
        bases = jt.rand((B * S, D, R))
        norm = jt.sqrt((bases * bases).sum(dim=1, keepdims=True)).maximum(1e-12)
        return (bases / norm).stop_grad()

    def seeded_bases(self, D, seed=None):
        """The (S, D, R) bases that ``seed`` (default: ``self.seed``) gives every sample, float32:
        U[0, 1) from NumPy's ``default_rng(seed)``, L2-normalised over D."""
        seed = self.seed if seed is None else seed
        bases = np.random.default_rng(seed).random((self.S, D, self.R), dtype=np.float32)
        norm = np.maximum(np.sqrt((bases * bases).sum(axis=1, keepdims=True)), np.float32(1e-12))
        return bases / norm

    def _initial_bases(self, B, D):
        if self.rand_init:
            return self._build_bases(B, self.S, D, self.R)
        if self._fixed_bases is None:
            self._fixed_bases = self._build_bases(1, self.S, D, self.R)
        return jt.concat([self._fixed_bases] * B, dim=0)

    @staticmethod
    def _update_coef(x, bases, coef):
        numerator = _mm(x, bases, trans_a=True)
        denominator = _mm(coef, _mm(bases, bases, trans_a=True))
        return coef * numerator / (denominator + 1e-6)

    @staticmethod
    def _update_bases(x, bases, coef):
        numerator = _mm(x, coef)
        denominator = _mm(bases, _mm(coef, coef, trans_a=True))
        return bases * numerator / (denominator + 1e-6)

    def _decompose(self, x, bases):
        """One (D, N) matrix and its (D, R) bases → reconstruction (D, N)."""
        steps = self.train_steps if self.is_train else self.eval_steps
        one_step = self.grad_mode == "one_step"
        x_iter = x.detach() if one_step else x
        coef = jt.nn.softmax(self.inv_t * _mm(x_iter, bases, trans_a=True), dim=-1)
        for _ in range(steps):
            coef = self._update_coef(x_iter, bases, coef)
            bases = self._update_bases(x_iter, bases, coef)
        if one_step:
            bases, coef = bases.detach(), coef.detach()
        coef = self._update_coef(x, bases, coef)
        return _mm(bases, coef, trans_b=True)

    def execute(self, x):
        B, C, H, W = x.shape
        D = C // self.S
        mats = x.reshape(B * self.S, D, H * W)
        bases = self._initial_bases(B, D)
        out = [self._decompose(mats[i], bases[i]) for i in range(B * self.S)]
        return jt.stack(out, dim=0).reshape(B, C, H, W)


class Hamburger(nn.Module):
    """``ReLU(x + ham_out(NMF(ReLU(ham_in(x)))))``."""

    def __init__(self, ham_channels=512, ham_kwargs=None, norm_groups=32):
        super().__init__()
        self.ham_in = ConvModule(ham_channels, ham_channels, num_groups=None, relu=False)
        self.ham = NMF2D(**(ham_kwargs or {}))
        self.ham_out = ConvModule(ham_channels, ham_channels, num_groups=norm_groups, relu=False)

    def execute(self, x):
        enjoy = self.ham(jt.nn.relu(self.ham_in(x)))
        return jt.nn.relu(x + self.ham_out(enjoy))


class LightHamHead(nn.Module):
    """Concatenate stages ``in_index`` at the stride of the first → squeeze → Hamburger → align → classify."""

    def __init__(
        self,
        in_channels=(128, 320, 512),
        in_index=(1, 2, 3),
        channels=512,
        ham_channels=512,
        num_classes=150,
        dropout_ratio=0.1,
        norm_groups=32,
        align_corners=False,
        ham_kwargs=None,
    ):
        super().__init__()
        if align_corners:
            raise ValueError("LightHamHead: only align_corners=False is implemented (the reference setting)")
        if len(in_channels) != len(in_index):
            raise ValueError("LightHamHead: in_channels and in_index must have the same length")
        self.in_index = list(in_index)
        self.num_classes = num_classes
        self.squeeze = ConvModule(sum(in_channels), ham_channels, num_groups=norm_groups)
        self.hamburger = Hamburger(ham_channels, ham_kwargs, norm_groups)
        self.align = ConvModule(ham_channels, channels, num_groups=norm_groups)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None
        self.conv_seg = Conv1x1(channels, num_classes)

    def execute(self, feats):
        inputs = [feats[i] for i in self.in_index]
        size = inputs[0].shape[2:]
        x = jt.concat([inputs[0]] + [resize_bilinear(f, size) for f in inputs[1:]], dim=1)
        x = self.align(self.hamburger(self.squeeze(x)))
        if self.dropout is not None:
            x = self.dropout(x)
        return self.conv_seg(x)
