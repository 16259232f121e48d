"""Bilinear resize (PyTorch's ``align_corners=False``) and the training loss fused with it.

``resize_bilinear(x, size)``: on CPU a hand-written OpenMP kernel (forward and backward), one pass
over each output plane with the two source rows it blends kept in cache; elsewhere the portable
form, two index gathers (width, then height) that Jittor fuses. Both compute
``a + (b - a) * frac`` along the width, then along the height, with PyTorch's source indices.

``resized_cross_entropy(logits, label)``: cross entropy of ``logits`` resized to the label's size,
without ever holding the full-size logits (N·C·H·W floats, 315 MB for SegNeXt at batch 2, 512²).
The forward pass computes each output row's upsampled logits for all classes in a small buffer and
keeps one log-sum-exp per pixel; the backward pass works plane by plane (no write conflicts),
recomputes the upsampled row, forms ``softmax - onehot`` and folds it straight back through the
resize. Loss semantics are the reference's: 255 ignored, the sum divided by all N·H·W pixels.
"""
import numpy as np

from ..runtime import jt

IGNORE_INDEX = 255
_TABLES = {}


def resize_table(in_size, out_size):
    """Source indices (lo, hi) and weights of PyTorch's align_corners=False resize along one axis."""
    key = (in_size, out_size)
    if key not in _TABLES:
        scale = np.float32(in_size) / np.float32(out_size)
        src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
        src = np.maximum(src, 0)
        lo = np.minimum(src.astype(np.int32), in_size - 1)
        hi = np.minimum(lo + 1, in_size - 1).astype(np.int32)
        frac = (src - lo).astype(np.float32)
        _TABLES[key] = (lo, hi, frac)
    return _TABLES[key]


def _table_vars(in_h, in_w, out_h, out_w):
    return [jt.array(a) for a in resize_table(in_h, out_h) + resize_table(in_w, out_w)]


def _use_kernel():
    return not jt.flags.use_cuda


# --------------------------------------------------------------------------- portable form
def _gather_axis(x, axis, out_size):
    in_size = x.shape[axis]
    if in_size == out_size:
        return x
    lo, hi, frac = resize_table(in_size, out_size)
    shape = list(x.shape)
    shape[axis] = out_size
    index = [f"i{d}" for d in range(x.ndim)]
    index[axis] = f"@e0(i{axis})"
    a = x.reindex(shape, index, extras=[jt.array(lo)])
    b = x.reindex(shape, index, extras=[jt.array(hi)])
    weight_shape = [1] * x.ndim
    weight_shape[axis] = out_size
    return a + (b - a) * jt.array(frac).reshape(weight_shape)


def resize_bilinear_gather(x, size):
    """The portable form (reindex gathers): used on CUDA and as the CPU kernel's test reference."""
    return _gather_axis(_gather_axis(x, 3, int(size[1])), 2, int(size[0]))


# --------------------------------------------------------------------------- CPU kernels
_HEADER = r"""
#include <vector>
#include <cmath>
#include <cstring>
#include <algorithm>
#ifndef JSN_RESIZE_HELPERS
#define JSN_RESIZE_HELPERS
#define JSN_RESIZE_PAR_MIN (1 << 16)
namespace jsn_resize {

// out[x] = row[lo[x]] + (row[hi[x]] - row[lo[x]]) * f[x], x < n
static inline void hlerp(const float* __restrict row, const int* __restrict lo, const int* __restrict hi,
                         const float* __restrict f, float* __restrict out, int n) {
    for (int x = 0; x < n; x++) {
        float a = row[lo[x]];
        out[x] = a + (row[hi[x]] - a) * f[x];
    }
}

// Keeps the width-interpolated source rows r0 and r1 of one plane in ra / rb (reusing what it has).
struct RowPair {
    std::vector<float> buf;
    float* ra; float* rb; int ia = -1, ib = -1;
    explicit RowPair(int n) : buf(2 * (size_t)n) { ra = buf.data(); rb = ra + n; }
    void load(const float* plane, int W, int r0, int r1, const int* xlo, const int* xhi, const float* xf, int OW) {
        if (ia != r0) {
            if (ib == r0) { std::swap(ra, rb); std::swap(ia, ib); }
            else { hlerp(plane + (size_t)r0 * W, xlo, xhi, xf, ra, OW); ia = r0; }
        }
        if (ib != r1) { hlerp(plane + (size_t)r1 * W, xlo, xhi, xf, rb, OW); ib = r1; }
    }
};

// out[x] = a[x] + (b[x] - a[x]) * f
static inline void vlerp(const float* __restrict a, const float* __restrict b, float f, float* __restrict out, int n) {
#pragma omp simd
    for (int x = 0; x < n; x++) out[x] = a[x] + (b[x] - a[x]) * f;
}

// Adjoint of the resize for one plane: acc holds, per source row, the height-folded gradient at
// output width (H x OW); scatter it along the width into gx (H x W, overwritten).
static inline void fold_width(const float* __restrict acc, int H, int OW, const int* xlo, const int* xhi,
                              const float* xf, float* __restrict gx, int W) {
    std::memset(gx, 0, sizeof(float) * (size_t)H * W);
    for (int r = 0; r < H; r++) {
        const float* a = acc + (size_t)r * OW;
        float* g = gx + (size_t)r * W;
        for (int x = 0; x < OW; x++) {
            float v = a[x], f = xf[x];
            g[xlo[x]] += v - v * f;
            g[xhi[x]] += v * f;
        }
    }
}

// acc[r0] += (1 - f) * d, acc[r1] += f * d  (rows of length n)
static inline void fold_height(const float* __restrict d, float f, float* __restrict a0, float* __restrict a1, int n) {
#pragma omp simd
    for (int x = 0; x < n; x++) { float v = d[x]; a0[x] += v - v * f; }
#pragma omp simd
    for (int x = 0; x < n; x++) a1[x] += d[x] * f;
}

}  // namespace jsn_resize
#endif
"""

# inputs: in0 x (N,C,H,W), in1..in3 height table (lo, hi, frac), in4..in6 width table
_TABLE_PTRS = r"""
    const int* ylo = in1_p; const int* yhi = in2_p; const float* yf = in3_p;
    const int* xlo = in4_p; const int* xhi = in5_p; const float* xf = in6_p;
"""

_RESIZE_FORWARD = r"""
    using namespace jsn_resize;
    const int H = in0_shape2, W = in0_shape3, OH = out0_shape2, OW = out0_shape3;
    const int planes = in0_shape0 * in0_shape1;
""" + _TABLE_PTRS + r"""
    #pragma omp parallel for schedule(static) if ((long long)planes * OH * OW > JSN_RESIZE_PAR_MIN)
    for (int p = 0; p < planes; p++) {
        RowPair rows(OW);
        const float* plane = in0_p + (size_t)p * H * W;
        float* out = out0_p + (size_t)p * OH * OW;
        for (int oy = 0; oy < OH; oy++) {
            rows.load(plane, W, ylo[oy], yhi[oy], xlo, xhi, xf, OW);
            vlerp(rows.ra, rows.rb, yf[oy], out + (size_t)oy * OW, OW);
        }
    }
"""

# inputs: in0 upstream gradient (N,C,OH,OW), tables; out0: gradient of x (N,C,H,W)
_RESIZE_BACKWARD = r"""
    using namespace jsn_resize;
    const int OH = in0_shape2, OW = in0_shape3, H = out0_shape2, W = out0_shape3;
    const int planes = out0_shape0 * out0_shape1;
""" + _TABLE_PTRS + r"""
    #pragma omp parallel for schedule(static) if ((long long)planes * OH * OW > JSN_RESIZE_PAR_MIN)
    for (int p = 0; p < planes; p++) {
        std::vector<float> acc((size_t)H * OW, 0.f);
        const float* g = in0_p + (size_t)p * OH * OW;
        for (int oy = 0; oy < OH; oy++)
            fold_height(g + (size_t)oy * OW, yf[oy], &acc[(size_t)ylo[oy] * OW], &acc[(size_t)yhi[oy] * OW], OW);
        fold_width(acc.data(), H, OW, xlo, xhi, xf, out0_p + (size_t)p * H * W, W);
    }
"""


class _ResizeFunction(jt.Function):
    def execute(self, x, size):
        n, c, h, w = x.shape
        self.in_shape = (n, c, h, w)
        self.tables = _table_vars(h, w, *size)
        return jt.code((n, c) + tuple(size), x.dtype, inputs=[x] + self.tables, cpu_header=_HEADER,
                       cpu_src=_RESIZE_FORWARD)

    def grad(self, g):
        return jt.code(self.in_shape, g.dtype, inputs=[g] + self.tables, cpu_header=_HEADER,
                       cpu_src=_RESIZE_BACKWARD), None


def resize_bilinear(x, size):
    """Bilinear resize of NCHW ``x`` to ``size`` (h, w), align_corners=False, equal to PyTorch's."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[2:]) == size:
        return x
    if _use_kernel() and x.dtype == "float32":
        return _ResizeFunction.apply(x, size)
    return resize_bilinear_gather(x, size)


# --------------------------------------------------------------------------- fused loss
# inputs: in0 logits (N,C,H,W), in1..in6 tables, in7 label (N,OH,OW) int32
# outputs: out0 per-row loss sums (N,OH), out1 log-sum-exp per pixel (N,OH,OW)
_CE_FORWARD = r"""
    using namespace jsn_resize;
    const int N = in0_shape0, C = in0_shape1, H = in0_shape2, W = in0_shape3;
    const int OH = in7_shape1, OW = in7_shape2;
""" + _TABLE_PTRS + r"""
    const int* label = in7_p;
    #pragma omp parallel for schedule(static)
    for (int row = 0; row < N * OH; row++) {
        const int n = row / OH, oy = row % OH;
        std::vector<float> buf((size_t)(C + 4) * OW);
        float* L = buf.data();                 // C x OW upsampled logits of this row
        float* ta = L + (size_t)C * OW;        // width-interpolated source rows
        float* tb = ta + OW;
        float* m = tb + OW;
        float* s = m + OW;
        const float f = yf[oy];
        for (int c = 0; c < C; c++) {
            const float* plane = in0_p + ((size_t)n * C + c) * H * W;
            hlerp(plane + (size_t)ylo[oy] * W, xlo, xhi, xf, ta, OW);
            hlerp(plane + (size_t)yhi[oy] * W, xlo, xhi, xf, tb, OW);
            vlerp(ta, tb, f, L + (size_t)c * OW, OW);
        }
        std::memcpy(m, L, sizeof(float) * OW);
        for (int c = 1; c < C; c++) {
            const float* l = L + (size_t)c * OW;
#pragma omp simd
            for (int x = 0; x < OW; x++) m[x] = std::max(m[x], l[x]);
        }
        std::memset(s, 0, sizeof(float) * OW);
        for (int c = 0; c < C; c++) {
            const float* l = L + (size_t)c * OW;
#pragma omp simd
            for (int x = 0; x < OW; x++) s[x] += expf(l[x] - m[x]);
        }
        const int* lab = label + (size_t)row * OW;
        float* lse = out1_p + (size_t)row * OW;
        double total = 0.0;
        for (int x = 0; x < OW; x++) {
            lse[x] = m[x] + logf(s[x]);
            const int k = lab[x];
            if (k >= 0 && k < C) total += (double)(lse[x] - L[(size_t)k * OW + x]);
        }
        out0_p[row] = (float)total;
    }
"""

# inputs: in0 logits, in1..in6 tables, in7 label, in8 lse (N,OH,OW), in9 upstream grad of the row sums (N,OH)
# out0: gradient of the logits (N,C,H,W)
_CE_BACKWARD = r"""
    using namespace jsn_resize;
    const int N = in0_shape0, C = in0_shape1, H = in0_shape2, W = in0_shape3;
    const int OH = in7_shape1, OW = in7_shape2;
""" + _TABLE_PTRS + r"""
    #pragma omp parallel for schedule(static)
    for (int p = 0; p < N * C; p++) {
        const int n = p / C, c = p % C;
        const float* plane = in0_p + (size_t)p * H * W;
        RowPair rows(OW);
        std::vector<float> acc((size_t)H * OW, 0.f), l(OW), d(OW);
        for (int oy = 0; oy < OH; oy++) {
            const size_t row = (size_t)n * OH + oy;
            rows.load(plane, W, ylo[oy], yhi[oy], xlo, xhi, xf, OW);
            vlerp(rows.ra, rows.rb, yf[oy], l.data(), OW);
            const int* lab = in7_p + row * OW;
            const float* lse = in8_p + row * OW;
            const float g = in9_p[row];
            float* dd = d.data(); const float* ll = l.data();
#pragma omp simd
            for (int x = 0; x < OW; x++) {
                const int k = lab[x];
                const float valid = (k >= 0 && k < C) ? g : 0.f;
                dd[x] = valid * (expf(ll[x] - lse[x]) - (k == c ? 1.f : 0.f));
            }
            fold_height(dd, yf[oy], &acc[(size_t)ylo[oy] * OW], &acc[(size_t)yhi[oy] * OW], OW);
        }
        fold_width(acc.data(), H, OW, xlo, xhi, xf, out0_p + (size_t)p * H * W, W);
    }
"""


class _ResizedCrossEntropy(jt.Function):
    def execute(self, logits, label):
        n, c, h, w = logits.shape
        out_h, out_w = label.shape[1:]
        tables = _table_vars(h, w, out_h, out_w)
        row_loss, lse = jt.code([(n, out_h), (n, out_h, out_w)], ["float32", "float32"],
                                inputs=[logits] + tables + [label], cpu_header=_HEADER, cpu_src=_CE_FORWARD)
        self.saved = (logits, tables, label, lse)
        return row_loss

    def grad(self, g):
        logits, tables, label, lse = self.saved
        grad = jt.code(logits.shape, "float32", inputs=[logits] + tables + [label, lse, g],
                       cpu_header=_HEADER, cpu_src=_CE_BACKWARD)
        return grad, None


def cross_entropy(logits, label, ignore_index=IGNORE_INDEX):
    """Pixel cross entropy of (N, C, H, W) logits against (N, H, W) labels.

    Ignored pixels contribute zero and the sum is divided by *all* N·H·W pixels, as the
    reference (mmseg 0.24, ``avg_non_ignore=False``) does.
    """
    n, c, h, w = logits.shape
    label = label.int32()
    valid = (label != ignore_index).float32()
    safe = label * (label != ignore_index).int32()
    peak = logits.max(dim=1, keepdims=True).detach()
    log_sum_exp = jt.log(jt.exp(logits - peak).sum(dim=1)) + peak.reshape(n, h, w)
    picked = logits.reindex([n, h, w], ["i0", "@e0(i0,i1,i2)", "i1", "i2"], extras=[safe])
    return ((log_sum_exp - picked) * valid).sum() / float(n * h * w)


def resized_cross_entropy(logits, label, ignore_index=IGNORE_INDEX):
    """``cross_entropy(resize_bilinear(logits, label.shape[1:]), label)``, fused on CPU.

    Labels outside ``[0, C)`` count as ignored in the fused kernel; datasets reject them earlier.
    """
    n, c = logits.shape[:2]
    out_h, out_w = label.shape[1:]
    if not (_use_kernel() and logits.dtype == "float32"):
        return cross_entropy(resize_bilinear(logits, (out_h, out_w)), label, ignore_index)
    label = label.int32()
    if ignore_index < c:  # an ignore index inside the class range must still be skipped
        label = jt.where(label == ignore_index, jt.full_like(label, -1), label)
    return _ResizedCrossEntropy.apply(logits, label).sum() / float(n * out_h * out_w)
