"""Depthwise strip convolutions (1×k and k×1) and the fused MSCA strip sum.

A strip convolution is a depthwise convolution with a 1×k ("h", along W) or k×1 ("v", along H)
kernel, odd k, "same" zero padding (k//2), stride 1 and a per-channel bias — the six strip convs of
every MSCA block of SegNeXt. Three implementations compute it:

* ``'meta'``   — Jittor meta-operators (``reindex`` → broadcast multiply → ``sum``), fused by
  Jittor's JIT into one loop per op; portable to every device Jittor supports.
* ``'kernel'`` — hand-written kernels through ``jt.code``: C++/OpenMP on the CPU (row loops with the
  kernel length as a compile-time constant, register-blocked vector accumulators; one backward
  kernel per strip producing the input, weight and bias gradients, parallel over channels so the
  weight-gradient sums need no atomics), CUDA on the GPU (one block per row tile / column tile
  with the data staged in shared memory; weight gradients reduced per block, then ``atomicAdd``).
  **The CUDA sources compile with nvcc (sm_80/sm_90, float16/32/64) but have never been run on a
  GPU**, so ``'auto'`` does not pick them yet.
* ``'conv2d'`` — Jittor's own depthwise convolution, exactly what ``nn.Conv2d(C, C, (1, k),
  groups=C)`` does (oneDNN on the CPU, Jittor's DepthwiseConv on CUDA); the baseline.

``'auto'`` resolves to :data:`AUTO_IMPL` for the current device (see its comment for the measured
reasons). ``JSEGNEXT_STRIP_IMPL`` in the environment overrides it.

:func:`msca_strips` computes MSCA's ``a + Σ_i v_i(h_i(a))`` over the three branch pairs in one
op; on the CPU its fused kernel works plane by plane (``a``, the output and the output gradient
are read/written once per plane, the intermediates ``h_i(a)`` stay in cache; they are kept for
the backward pass only while gradients are recorded).
"""
import math
import os

from ..runtime import jt

__all__ = ["strip_conv", "StripConv", "msca_strips", "STRIP_IMPLS", "AUTO_IMPL", "resolve_impl"]

#: Values accepted for ``impl``.
STRIP_IMPLS = ("auto", "meta", "kernel", "conv2d")

#: What ``impl='auto'`` means on each device, chosen from ``benchmarks/bench_strip_conv.py``:
#: on the 2-core AVX-512 CPU the C++ kernel beats oneDNN (``nn.Conv2d(groups=C)``) on every strip
#: shape of SegNeXt-T/B at 512² and 1024×2048 (one thread: forward 1.0-31×, forward+backward
#: 2.6-16×), and the meta-operator path is 2-10× slower than oneDNN. On CUDA the hand-written
#: kernel has not run yet, so ``'auto'`` keeps Jittor's depthwise conv there until a GPU run of
#: the tests and the benchmark says otherwise.
AUTO_IMPL = {"cpu": "kernel", "cuda": "conv2d"}

#: What ``msca_strips(impl='auto')`` means on each device: the fused kernel on the CPU (vs the six
#: separate kernel strips, one thread: forward 1.05-1.4× faster at 512², ~1.3-1.7× at 1024×2048;
#: forward+backward 1.1-1.7× / 1.2-1.5×), separate strips on CUDA (no fused CUDA kernel).
AUTO_MSCA_IMPL = {"cpu": "fused", "cuda": "separate"}

_ENV_IMPL = "JSEGNEXT_STRIP_IMPL"


def _device():
    return "cuda" if jt.flags.use_cuda else "cpu"


def resolve_impl(impl="auto", dtype="float32"):
    """The concrete implementation (``'meta'``, ``'kernel'`` or ``'conv2d'``) that ``impl`` stands
    for on the current device and dtype."""
    if impl not in STRIP_IMPLS:
        raise ValueError(f"impl must be one of {STRIP_IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = os.environ.get(_ENV_IMPL) or AUTO_IMPL[_device()]
        if impl not in STRIP_IMPLS[1:]:
            raise ValueError(f"{_ENV_IMPL} must be one of {STRIP_IMPLS[1:]}, got {impl!r}")
        if impl == "kernel" and not _kernel_supports(dtype):
            impl = "meta"
    elif impl == "kernel" and not _kernel_supports(dtype):
        raise TypeError(f"strip_conv impl='kernel' on {_device()} does not support {dtype}")
    return impl


def _kernel_supports(dtype):
    dtype = str(dtype)
    if jt.flags.use_cuda:
        return dtype in ("float16", "float32", "float64")
    return dtype in ("float32", "float64")


def _check(x, weight, bias, orientation):
    if orientation not in ("h", "v"):
        raise ValueError(f"orientation must be 'h' (1×k) or 'v' (k×1), got {orientation!r}")
    if x.ndim != 4:
        raise ValueError(f"strip_conv expects NCHW input, got shape {list(x.shape)}")
    C = x.shape[1]
    wshape = list(weight.shape)
    if len(wshape) != 4 or wshape[0] != C or wshape[1] != 1:
        raise ValueError(f"weight must be [C,1,1,k] or [C,1,k,1] with C={C}, got {wshape}")
    k = wshape[3] if orientation == "h" else wshape[2]
    other = wshape[2] if orientation == "h" else wshape[3]
    if other != 1:
        raise ValueError(f"orientation {orientation!r} needs weight [C,1,{'1,k' if orientation == 'h' else 'k,1'}], got {wshape}")
    if k % 2 != 1:
        raise ValueError(f"strip_conv needs an odd kernel size, got {k}")
    if bias is not None and list(bias.shape) != [C]:
        raise ValueError(f"bias must have shape [{C}], got {list(bias.shape)}")
    return k


# ----------------------------------------------------------------------------------------------
# meta-operator implementation
# ----------------------------------------------------------------------------------------------

def _meta_corr(x, w2, k, orientation, flip=False):
    """Σ_j w2[c, j] · x[..., i + j − p] along W ('h') or H ('v'); zero outside (``flip``: i − j + p)."""
    N, C, H, W = x.shape
    p = k // 2
    shift = f"-i4+{p}" if flip else f"+i4-{p}"
    if orientation == "h":
        idx = ["i0", "i1", "i2", f"i3{shift}"]
    else:
        idx = ["i0", "i1", f"i2{shift}", "i3"]
    shape = [N, C, H, W, k]
    xx = x.reindex(shape, idx)
    ww = w2.broadcast(shape, [0, 2, 3])
    return (xx * ww).sum(4)


def _meta_forward(x, w2, b, k, orientation):
    y = _meta_corr(x, w2, k, orientation)
    return y + b.broadcast(y.shape, [0, 2, 3])


def _meta_backward(x, w2, g, k, orientation):
    N, C, H, W = x.shape
    p = k // 2
    dx = _meta_corr(g, w2, k, orientation, flip=True)
    shape = [N, C, H, W, k]
    if orientation == "h":
        idx = ["i0", "i1", "i2", f"i3+i4-{p}"]
    else:
        idx = ["i0", "i1", f"i2+i4-{p}", "i3"]
    xx = x.reindex(shape, idx)
    dw = (xx * g.broadcast(shape, [4])).sum([0, 2, 3])
    db = g.sum([0, 2, 3])
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# hand-written kernels: C++ / OpenMP
# ----------------------------------------------------------------------------------------------

_CPU_HEADER = r"""
#include <vector>
#include <algorithm>
#include <cstdint>
#ifndef JSN_STRIP_CPU_HELPERS
#define JSN_STRIP_CPU_HELPERS
// below this many multiply-adds a kernel runs on one thread (the fork/join costs more)
#define JSN_PAR_MIN (1 << 17)
namespace jsn_strip {

// y[i] = b + sum_j w[j] * xp[i + j], i < n; xp holds n + K - 1 values (the zero-padded row).
template <int K, typename T>
static inline void hrow(const T* __restrict xp, const T* __restrict w, T b, T* __restrict y, int n) {
    for (int i = 0; i < n; i++) {
        T acc = b;
#pragma GCC unroll 64
        for (int j = 0; j < K; j++) acc += w[j] * xp[i + j];
        y[i] = acc;
    }
}

// y[i] += sum_j w[j] * xp[i + j]
template <int K, typename T>
static inline void hrow_add(const T* __restrict xp, const T* __restrict w, T* __restrict y, int n) {
    for (int i = 0; i < n; i++) {
        T acc = y[i];
#pragma GCC unroll 64
        for (int j = 0; j < K; j++) acc += w[j] * xp[i + j];
        y[i] = acc;
    }
}

// copy a row of n values into pad[P .. P+n) and zero the P values on either side
template <typename T>
static inline void pad_row(T* __restrict pad, const T* __restrict src, int n, int P) {
    for (int i = 0; i < P; i++) { pad[i] = T(0); pad[P + n + i] = T(0); }
    for (int i = 0; i < n; i++) pad[P + i] = src[i];
}

#if defined(__GNUC__)
#if defined(__AVX512F__)
#define JSN_VB 64
#elif defined(__AVX__)
#define JSN_VB 32
#else
#define JSN_VB 16
#endif
// GCC/Clang vector of JSN_VB bytes, loadable/storable at any element-aligned address
template <typename T> struct Vec { typedef T type __attribute__((vector_size(JSN_VB), aligned(sizeof(T)))); };
template <typename T>
static inline typename Vec<T>::type vload(const T* p) { return *reinterpret_cast<const typename Vec<T>::type*>(p); }
template <typename T>
static inline void vstore(T* p, typename Vec<T>::type v) { *reinterpret_cast<typename Vec<T>::type*>(p) = v; }

// One output row segment of NV vectors for vplane: accumulators stay in registers over the taps.
template <int K, int NV, typename T>
static inline void vplane_block(const T* __restrict x, const T* __restrict w, T b, T* __restrict yr,
                                int r, int W, int i, int jlo, int jhi, bool add) {
    typedef typename Vec<T>::type vt;
    constexpr int P = K / 2, L = JSN_VB / sizeof(T);
    vt a[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) a[v] = add ? vload(yr + i + v * L) + b : vt{} + b;
    if (jhi - jlo == K) {
        const T* __restrict x0 = x + (int64_t)(r - P) * W + i;
#pragma GCC unroll 64
        for (int j = 0; j < K; j++) {
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) a[v] += w[j] * vload(x0 + (int64_t)j * W + v * L);
        }
    } else {
        for (int j = jlo; j < jhi; j++) {
            const T* __restrict xr = x + (int64_t)(r + j - P) * W + i;
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) a[v] += w[j] * vload(xr + v * L);
        }
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) vstore(yr + i + v * L, a[v]);
}

// y[r, :] (= or +=) b + sum_j w[j] * x[r + j - P, :]  over one H×W plane (rows outside are zero).
// Column blocks of 4 vectors (4 independent FMA chains), then single vectors, then scalars.
template <int K, typename T>
static inline void vplane(const T* __restrict x, const T* __restrict w, T b, T* __restrict y,
                          int H, int W, bool add) {
    constexpr int P = K / 2, L = JSN_VB / sizeof(T);
    for (int r = 0; r < H; r++) {
        T* __restrict yr = y + (int64_t)r * W;
        const int jlo = std::max(0, P - r), jhi = std::min(K, H + P - r);
        int i = 0;
        for (; i + 4 * L <= W; i += 4 * L) vplane_block<K, 4>(x, w, b, yr, r, W, i, jlo, jhi, add);
        if (i + 2 * L <= W) { vplane_block<K, 2>(x, w, b, yr, r, W, i, jlo, jhi, add); i += 2 * L; }
        if (i + L <= W) { vplane_block<K, 1>(x, w, b, yr, r, W, i, jlo, jhi, add); i += L; }
        for (; i < W; i++) {
            T acc = add ? yr[i] + b : b;
            for (int j = jlo; j < jhi; j++) acc += w[j] * x[(int64_t)(r + j - P) * W + i];
            yr[i] = acc;
        }
    }
}
#else
// y[r, :] (= or +=) b + sum_j w[j] * x[r + j - P, :]  over one H×W plane (rows outside are zero)
template <int K, typename T>
static inline void vplane(const T* __restrict x, const T* __restrict w, T b, T* __restrict y,
                          int H, int W, bool add) {
    constexpr int P = K / 2;
    for (int r = 0; r < H; r++) {
        T* __restrict yr = y + (int64_t)r * W;
        const int jlo = std::max(0, P - r), jhi = std::min(K, H + P - r);
        if (jhi - jlo == K) {
            // interior row: all K source rows exist; accumulate in registers over column blocks
            const T* __restrict x0 = x + (int64_t)(r - P) * W;
            int i = 0;
            constexpr int BW = 64 / sizeof(T) * 2;   // two cache lines of columns
            for (; i + BW <= W; i += BW) {
                T acc[BW];
                for (int t = 0; t < BW; t++) acc[t] = add ? yr[i + t] + b : b;
#pragma GCC unroll 64
                for (int j = 0; j < K; j++) {
                    const T wj = w[j];
                    const T* __restrict xr = x0 + (int64_t)j * W + i;
                    for (int t = 0; t < BW; t++) acc[t] += wj * xr[t];
                }
                for (int t = 0; t < BW; t++) yr[i + t] = acc[t];
            }
            for (; i < W; i++) {
                T acc = add ? yr[i] + b : b;
                for (int j = 0; j < K; j++) acc += w[j] * x0[(int64_t)j * W + i];
                yr[i] = acc;
            }
        } else {
            if (add) { for (int i = 0; i < W; i++) yr[i] += b; }
            else     { for (int i = 0; i < W; i++) yr[i] = b; }
            for (int j = jlo; j < jhi; j++) {
                const T* __restrict xr = x + (int64_t)(r + j - P) * W;
                const T wj = w[j];
                for (int i = 0; i < W; i++) yr[i] += wj * xr[i];
            }
        }
    }
}

#endif

template <typename T>
static inline T dot(const T* __restrict a, const T* __restrict b, int n) {
    T s = T(0);
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

template <typename T>
static inline T rowsum(const T* __restrict a, int n) {
    T s = T(0);
    for (int i = 0; i < n; i++) s += a[i];
    return s;
}

// dw[j] += sum_i g[i] * x[i + j - P]  (one row, x unpadded, zero outside)
template <int K, typename T>
static inline void hdw_row(const T* __restrict g, const T* __restrict x, double* __restrict dw, int n) {
    constexpr int P = K / 2;
    for (int j = 0; j < K; j++) {
        const int off = j - P;
        const int lo = std::max(0, -off), hi = std::min(n, n - off);
        if (hi > lo) dw[j] += (double)dot(g + lo, x + lo + off, hi - lo);
    }
}

// dw[j] += sum_{r,i} g[r, i] * x[r, i + j - P] over one plane (1×K).
// With GCC/Clang vector types: K vector accumulators, acc[j] lane t collecting the columns
// i ≡ t (mod L), so each loaded vector of g feeds K independent FMAs and there is no horizontal
// reduction in the inner loop (~2.3x faster than K dot products per row); partial sums are
// flushed to double every 32 rows.
#if defined(__GNUC__)
template <int K, typename T>
static inline void hdw_plane(const T* __restrict g, const T* __restrict x, T* __restrict pad,
                             double* __restrict dw, int H, int W) {
    typedef typename Vec<T>::type vt;
    constexpr int P = K / 2, L = JSN_VB / sizeof(T);
    vt acc[K];
    for (int j = 0; j < K; j++) acc[j] = vt{};
    for (int r = 0; r < H; r++) {
        pad_row(pad, x + (int64_t)r * W, W, P);
        const T* __restrict gr = g + (int64_t)r * W;
        int i = 0;
        for (; i + L <= W; i += L) {
            const vt gv = vload(gr + i);
#pragma GCC unroll 64
            for (int j = 0; j < K; j++) acc[j] += gv * vload(pad + i + j);
        }
        for (; i < W; i++)
            for (int j = 0; j < K; j++) dw[j] += (double)(gr[i] * pad[i + j]);
        if ((r & 31) == 31 || r == H - 1) {
            for (int j = 0; j < K; j++) {
                T s = T(0);
                for (int t = 0; t < L; t++) s += acc[j][t];
                dw[j] += (double)s;
                acc[j] = vt{};
            }
        }
    }
}
#else
template <int K, typename T>
static inline void hdw_plane(const T* __restrict g, const T* __restrict x, T* __restrict pad,
                             double* __restrict dw, int H, int W) {
    (void)pad;
    for (int r = 0; r < H; r++) hdw_row<K>(g + (int64_t)r * W, x + (int64_t)r * W, dw, W);
}
#endif

// dw[j] += sum_r sum_i g[r, i] * x[r + j - P, i]  over one plane (K×1): K dot products per row.
template <int K, typename T>
static inline void vdw_plane_dot(const T* __restrict g, const T* __restrict x, double* __restrict dw, int H, int W) {
    constexpr int P = K / 2;
    for (int r = 0; r < H; r++) {
        const int jlo = std::max(0, P - r), jhi = std::min(K, H + P - r);
        for (int j = jlo; j < jhi; j++)
            dw[j] += (double)dot(g + (int64_t)r * W, x + (int64_t)(r + j - P) * W, W);
    }
}

#if defined(__GNUC__)
// Same sum with K vector accumulators per column block (no horizontal reductions in the loop):
// 1.3-4x faster than the dot products except for short kernels on wide rows.
template <int K, typename T>
static inline void vdw_plane_vec(const T* __restrict g, const T* __restrict x, double* __restrict dw, int H, int W) {
    typedef typename Vec<T>::type vt;
    constexpr int P = K / 2, L = JSN_VB / sizeof(T);
    vt acc[K];
    int i0 = 0;
    for (; i0 + L <= W; i0 += L) {
        for (int j = 0; j < K; j++) acc[j] = vt{};
        for (int r = 0; r < H; r++) {
            const vt gv = vload(g + (int64_t)r * W + i0);
            if (r >= P && r + P < H) {
                const T* __restrict x0 = x + (int64_t)(r - P) * W + i0;
#pragma GCC unroll 64
                for (int j = 0; j < K; j++) acc[j] += gv * vload(x0 + (int64_t)j * W);
            } else {
                const int jlo = std::max(0, P - r), jhi = std::min(K, H + P - r);
                for (int j = jlo; j < jhi; j++) acc[j] += gv * vload(x + (int64_t)(r + j - P) * W + i0);
            }
            if ((r & 31) == 31 || r == H - 1) {
                for (int j = 0; j < K; j++) {
                    T s = T(0);
                    for (int t = 0; t < L; t++) s += acc[j][t];
                    dw[j] += (double)s;
                    acc[j] = vt{};
                }
            }
        }
    }
    if (i0 < W) {  // remaining columns
        for (int r = 0; r < H; r++) {
            const int jlo = std::max(0, P - r), jhi = std::min(K, H + P - r);
            for (int j = jlo; j < jhi; j++)
                dw[j] += (double)dot(g + (int64_t)r * W + i0, x + (int64_t)(r + j - P) * W + i0, W - i0);
        }
    }
}
#endif

template <int K, typename T>
static inline void vdw_plane(const T* __restrict g, const T* __restrict x, double* __restrict dw, int H, int W) {
#if defined(__GNUC__)
    if (!(K <= 7 && W >= 128)) { vdw_plane_vec<K>(g, x, dw, H, W); return; }
#endif
    vdw_plane_dot<K>(g, x, dw, H, W);
}

}  // namespace jsn_strip
#endif
"""

_CPU_PRELUDE = r"""
    typedef in0_type T;
    const int N = in0_shape0, C = in0_shape1, H = in0_shape2, W = in0_shape3;
    const int64_t HW = (int64_t)H * W;
"""


def _cpu_forward_src(k, orientation):
    body = (r"""
            for (int r = 0; r < H; r++) {
                jsn_strip::pad_row(pad.data(), xp + (int64_t)r * W, W, P);
                jsn_strip::hrow<K>(pad.data(), w, bc, yp + (int64_t)r * W, W);
            }""" if orientation == "h" else r"""
            jsn_strip::vplane<K>(xp, w, bc, yp, H, W, false);""")
    return _CPU_PRELUDE + f"""
    constexpr int K = {k}, P = K / 2;
    const T* __restrict X = in0_p;
    const T* __restrict Wt = in1_p;
    const T* __restrict B = in2_p;
    T* __restrict Y = out0_p;
    #pragma omp parallel if ((int64_t)N * C * HW * K > JSN_PAR_MIN)
    {{
        std::vector<T> pad(W + 2 * P);
        #pragma omp for schedule(dynamic, 1)
        for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {{
            const int c = (int)(nc % C);
            const T* __restrict w = Wt + (int64_t)c * K;
            const T bc = B[c];
            const T* __restrict xp = X + nc * HW;
            T* __restrict yp = Y + nc * HW;{body}
        }}
    }}
"""


def _cpu_backward_src(k, orientation):
    if orientation == "h":
        body = r"""
                for (int r = 0; r < H; r++) {
                    jsn_strip::pad_row(pad.data(), gp + (int64_t)r * W, W, P);
                    jsn_strip::hrow<K>(pad.data(), wf, T(0), dxp + (int64_t)r * W, W);
                }
                jsn_strip::hdw_plane<K>(gp, xp, pad.data(), dw, H, W);"""
    else:
        body = r"""
                jsn_strip::vplane<K>(gp, wf, T(0), dxp, H, W, false);
                jsn_strip::vdw_plane<K>(gp, xp, dw, H, W);"""
    return _CPU_PRELUDE + f"""
    constexpr int K = {k}, P = K / 2;
    const T* __restrict X = in0_p;
    const T* __restrict Wt = in1_p;
    const T* __restrict G = in2_p;
    T* __restrict DX = out0_p;
    T* __restrict DW = out1_p;
    T* __restrict DB = out2_p;
    #pragma omp parallel if ((int64_t)N * C * HW * K > JSN_PAR_MIN)
    {{
        std::vector<T> pad(W + 2 * P);
        #pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < C; c++) {{
            T wf[K];
            for (int j = 0; j < K; j++) wf[j] = Wt[(int64_t)c * K + K - 1 - j];
            double dw[K];
            for (int j = 0; j < K; j++) dw[j] = 0;
            double db = 0;
            for (int n = 0; n < N; n++) {{
                const int64_t off = ((int64_t)n * C + c) * HW;
                const T* __restrict xp = X + off;
                const T* __restrict gp = G + off;
                T* __restrict dxp = DX + off;{body}
                for (int r = 0; r < H; r++) db += (double)jsn_strip::rowsum(gp + (int64_t)r * W, W);
            }}
            for (int j = 0; j < K; j++) DW[(int64_t)c * K + j] = (T)dw[j];
            DB[c] = (T)db;
        }}
    }}
"""


# ----------------------------------------------------------------------------------------------
# hand-written kernels: CUDA (UNTESTED — written without a GPU; see the module docstring)
# ----------------------------------------------------------------------------------------------

_CUDA_HEADER = r"""
#include <cuda_fp16.h>
#include <cstdint>
#ifndef JSN_STRIP_CUDA_HELPERS
#define JSN_STRIP_CUDA_HELPERS
namespace jsn_strip_cuda {

template <typename To, typename From>
__device__ __forceinline__ To cvt(From v) { return static_cast<To>(v); }
template <> __device__ __forceinline__ float cvt<float, __half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ __half cvt<__half, float>(float v) { return __float2half(v); }
template <> __device__ __forceinline__ double cvt<double, __half>(__half v) { return (double)__half2float(v); }

// 1×K along W. One block computes blockDim.x consecutive outputs of one row; the row segment plus
// its halo is staged in shared memory. blockIdx.x = row * ntiles + tile, row = (n*C + c)*H + r.
// flip=1 computes the input gradient (reversed taps); b may be null.
template <int K, typename T, typename A>
__global__ void hconv(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                      T* __restrict__ y, int C, int H, int W, int ntiles, int flip) {
    constexpr int P = K / 2;
    extern __shared__ __align__(16) unsigned char jsn_smem_raw[];
    A* s = reinterpret_cast<A*>(jsn_smem_raw);
    const int tw = blockDim.x;
    A* sw = s + tw + K - 1;
    const int64_t row = blockIdx.x / ntiles;
    const int tile = blockIdx.x % ntiles;
    const int c = (int)((row / H) % C);
    const int x0 = tile * tw;
    const T* __restrict__ xr = x + row * W;
    for (int t = threadIdx.x; t < tw + K - 1; t += tw) {
        const int xi = x0 + t - P;
        s[t] = (xi >= 0 && xi < W) ? cvt<A>(xr[xi]) : A(0);
    }
    for (int j = threadIdx.x; j < K; j += tw)
        sw[j] = cvt<A>(w[(int64_t)c * K + (flip ? K - 1 - j : j)]);
    __syncthreads();
    const int i = x0 + threadIdx.x;
    if (i < W) {
        A acc = b ? cvt<A>(b[c]) : A(0);
#pragma unroll
        for (int j = 0; j < K; j++) acc += sw[j] * s[threadIdx.x + j];
        y[row * W + i] = cvt<T>(acc);
    }
}

// K×1 along H. Block (32, 8) computes a tile of 32 columns × TH rows of one plane; the tile plus
// its halo rows is staged in shared memory (coalesced 32-wide loads).
// blockIdx.x = (plane * nrt + row_tile) * nct + col_tile.
template <int K, typename T, typename A, int TH>
__global__ void vconv(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                      T* __restrict__ y, int C, int H, int W, int nrt, int nct, int flip) {
    constexpr int P = K / 2;
    __shared__ A s[(TH + K - 1) * 32];
    __shared__ A sw[K];
    const int ct = blockIdx.x % nct;
    const int rt = (blockIdx.x / nct) % nrt;
    const int64_t plane = blockIdx.x / ((int64_t)nct * nrt);
    const int c = (int)(plane % C);
    const int r0 = rt * TH, c0 = ct * 32;
    const T* __restrict__ xp = x + plane * H * W;
    const int tid = threadIdx.y * 32 + threadIdx.x;
    for (int idx = tid; idx < (TH + K - 1) * 32; idx += 32 * blockDim.y) {
        const int rr = r0 + idx / 32 - P, cc = c0 + idx % 32;
        s[idx] = (rr >= 0 && rr < H && cc < W) ? cvt<A>(xp[(int64_t)rr * W + cc]) : A(0);
    }
    for (int j = tid; j < K; j += 32 * blockDim.y)
        sw[j] = cvt<A>(w[(int64_t)c * K + (flip ? K - 1 - j : j)]);
    __syncthreads();
    const int col = c0 + threadIdx.x;
    if (col >= W) return;
    const A bias = b ? cvt<A>(b[c]) : A(0);
    for (int rr = threadIdx.y; rr < TH; rr += blockDim.y) {
        const int r = r0 + rr;
        if (r >= H) break;
        A acc = bias;
#pragma unroll
        for (int j = 0; j < K; j++) acc += sw[j] * s[(rr + j) * 32 + threadIdx.x];
        y[plane * H * W + (int64_t)r * W + col] = cvt<T>(acc);
    }
}

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

// Weight and bias gradients: blockIdx.x = channel, blockIdx.y = slice of the N*H rows.
// Each thread keeps K + 1 partial sums in registers; warp shuffles then shared memory reduce
// them; one atomicAdd per tap and block into dw/db (zeroed before the launch).
template <int K, typename T, typename A>
__global__ void dwdb(const T* __restrict__ x, const T* __restrict__ g, A* __restrict__ dw,
                     A* __restrict__ db, int N, int C, int H, int W, int vertical) {
    constexpr int P = K / 2;
    __shared__ A red[32][K + 1];
    const int c = blockIdx.x;
    A acc[K + 1];
#pragma unroll
    for (int j = 0; j <= K; j++) acc[j] = A(0);
    const int64_t rows = (int64_t)N * H;
    for (int64_t rr = blockIdx.y; rr < rows; rr += gridDim.y) {
        const int n = (int)(rr / H), r = (int)(rr % H);
        const T* __restrict__ xp = x + ((int64_t)n * C + c) * H * W;
        const T* __restrict__ gr = g + (((int64_t)n * C + c) * H + r) * W;
        for (int i = threadIdx.x; i < W; i += blockDim.x) {
            const A gv = cvt<A>(gr[i]);
            acc[K] += gv;
#pragma unroll
            for (int j = 0; j < K; j++) {
                A xv = A(0);
                if (vertical) {
                    const int rj = r + j - P;
                    if (rj >= 0 && rj < H) xv = cvt<A>(xp[(int64_t)rj * W + i]);
                } else {
                    const int ij = i + j - P;
                    if (ij >= 0 && ij < W) xv = cvt<A>(xp[(int64_t)r * W + ij]);
                }
                acc[j] += gv * xv;
            }
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
#pragma unroll
    for (int j = 0; j <= K; j++) {
        const A v = warp_sum(acc[j]);
        if (lane == 0) red[warp][j] = v;
    }
    __syncthreads();
    for (int j = threadIdx.x; j <= K; j += blockDim.x) {
        A s = A(0);
        for (int q = 0; q < nwarps; q++) s += red[q][j];
        if (j < K) atomicAdd(dw + (int64_t)c * K + j, s);
        else atomicAdd(db + c, s);
    }
}

}  // namespace jsn_strip_cuda
#endif
"""


def _cuda_acc(dtype):
    return "double" if str(dtype) == "float64" else "float"


def _cuda_conv_launch(k, orientation, acc, bias_ptr, out, flip):
    """Host code launching the strip conv kernel on in0 (data) with weights in1."""
    if orientation == "h":
        return f"""
    const int C = in0_shape1, H = in0_shape2, W = in0_shape3;
    const int tw = W >= 256 ? 256 : ((W + 31) / 32) * 32;
    const int ntiles = (W + tw - 1) / tw;
    const int64_t nblocks = (int64_t)in0_shape0 * C * H * ntiles;
    const size_t shm = (size_t)(tw + 2 * {k} - 1) * sizeof({acc});
    jsn_strip_cuda::hconv<{k}, in0_type, {acc}><<<(unsigned)nblocks, tw, shm>>>(
        in0_p, in1_p, {bias_ptr}, {out}, C, H, W, ntiles, {flip});
"""
    return f"""
    const int C = in0_shape1, H = in0_shape2, W = in0_shape3;
    const int nrt = (H + 63) / 64, nct = (W + 31) / 32;
    const int64_t nblocks = (int64_t)in0_shape0 * C * nrt * nct;
    jsn_strip_cuda::vconv<{k}, in0_type, {acc}, 64><<<(unsigned)nblocks, dim3(32, 8)>>>(
        in0_p, in1_p, {bias_ptr}, {out}, C, H, W, nrt, nct, {flip});
"""


def _cuda_forward_src(k, orientation, dtype):
    return _cuda_conv_launch(k, orientation, _cuda_acc(dtype), "in2_p", "out0_p", 0)


def _cuda_backward_src(k, orientation, dtype):
    # inputs: in0 = g (for the input gradient), in1 = w, in2 = x; outputs: dx, dw (acc), db (acc)
    acc = _cuda_acc(dtype)
    vertical = int(orientation == "v")
    return _cuda_conv_launch(k, orientation, acc, "nullptr", "out0_p", 1) + f"""
    {{
        const int N = in0_shape0;
        cudaMemsetAsync(out1_p, 0, (size_t)C * {k} * sizeof({acc}), 0);
        cudaMemsetAsync(out2_p, 0, (size_t)C * sizeof({acc}), 0);
        const int64_t rows = (int64_t)N * H;
        int64_t slices = (1024 + C - 1) / C;
        if (slices > rows) slices = rows;
        if (slices < 1) slices = 1;
        jsn_strip_cuda::dwdb<{k}, in0_type, {acc}><<<dim3(C, (unsigned)slices), 256>>>(
            in2_p, in0_p, out1_p, out2_p, N, C, H, W, {vertical});
    }}
"""


# ----------------------------------------------------------------------------------------------
# kernel dispatch
# ----------------------------------------------------------------------------------------------

def _kernel_forward(x, w2, b, k, orientation):
    if jt.flags.use_cuda:
        return jt.code(x.shape, x.dtype, [x, w2, b], cuda_header=_CUDA_HEADER,
                       cuda_src=_cuda_forward_src(k, orientation, x.dtype))
    return jt.code(x.shape, x.dtype, [x, w2, b], cpu_header=_CPU_HEADER,
                   cpu_src=_cpu_forward_src(k, orientation))


def _kernel_backward(x, w2, g, k, orientation):
    C = x.shape[1]
    if jt.flags.use_cuda:
        acc = "float64" if str(x.dtype) == "float64" else "float32"
        dx, dw, db = jt.code([x.shape, [C, k], [C]], [x.dtype, acc, acc], [g, w2, x],
                             cuda_header=_CUDA_HEADER, cuda_src=_cuda_backward_src(k, orientation, x.dtype))
        return dx, dw, db
    return jt.code([x.shape, [C, k], [C]], [x.dtype, x.dtype, x.dtype], [x, w2, g],
                   cpu_header=_CPU_HEADER, cpu_src=_cpu_backward_src(k, orientation))


class _StripConvFunction(jt.Function):
    """Forward and backward of one strip conv for the 'meta' and 'kernel' implementations."""

    def __init__(self, k, orientation, impl):
        self.k, self.orientation, self.impl = k, orientation, impl

    def execute(self, x, w2, b):
        self.saved = (x, w2)
        if self.impl == "kernel":
            return _kernel_forward(x, w2, b, self.k, self.orientation)
        return _meta_forward(x, w2, b, self.k, self.orientation)

    def grad(self, g):
        x, w2 = self.saved
        if g is None:
            return None, None, None
        g = g.cast(x.dtype)
        if self.impl == "kernel":
            dx, dw, db = _kernel_backward(x, w2, g, self.k, self.orientation)
        else:
            dx, dw, db = _meta_backward(x, w2, g, self.k, self.orientation)
        return dx, dw.cast(w2.dtype), db.cast(w2.dtype)


def _conv2d(x, weight, bias, k, orientation):
    pad = (0, k // 2) if orientation == "h" else (k // 2, 0)
    if jt.flags.use_cuda:
        # what nn.Conv2d(groups=C) does on CUDA: Jittor's DepthwiseConv op, then the bias
        from jittor.depthwise_conv import DepthwiseConv

        y = DepthwiseConv(1, pad, 1)(x, weight)
        return y if bias is None else y + bias.broadcast(y.shape, [0, 2, 3])
    # The same graph nn.Conv2d(groups=C).execute builds on the CPU (compile options included):
    # Jittor's conv tuner turns it into oneDNN convolutions, forward and backward. (The functional
    # jt.nn.conv2d differs in its compile options and its backward is ~10x slower.)
    N, C, H, W = x.shape
    kh, kw = weight.shape[2], weight.shape[3]
    shape = [N, C, 1, 1, H, W, kh, kw]
    xx = x.reindex(shape, ["i0", "i1+i3", f"i4-{pad[0]}+i6", f"i5-{pad[1]}+i7"])
    ww = weight.reindex(shape, ["i1+i2", "i3", "i6", "i7"])
    ww.compile_options = xx.compile_options = {"G": C, "C": C}
    y = (xx * ww).reindex_reduce("add", [N, C, H, W], ["i0", "i1+i2", "i4", "i5"])
    return y if bias is None else y + bias.broadcast(y.shape, [0, 2, 3])


def strip_conv(x, weight, bias=None, orientation="h", impl="auto"):
    """Depthwise 1×k (``'h'``, weight [C,1,1,k]) or k×1 (``'v'``, weight [C,1,k,1]) convolution.

    Odd k, zero "same" padding k//2, stride 1, optional bias [C]; NCHW. Same result as
    ``nn.Conv2d(C, C, (1, k) or (k, 1), padding=(0, k//2) or (k//2, 0), groups=C)``.
    Differentiable in ``x``, ``weight`` and ``bias``.
    """
    k = _check(x, weight, bias, orientation)
    impl = resolve_impl(impl, x.dtype)
    if impl == "conv2d":
        return _conv2d(x, weight.cast(x.dtype), None if bias is None else bias.cast(x.dtype), k, orientation)
    C = x.shape[1]
    w2 = weight.cast(x.dtype).reshape([C, k])
    if bias is None:
        b = jt.zeros([C], dtype=x.dtype).stop_grad()
    else:
        b = bias.cast(x.dtype)
    return _StripConvFunction(k, orientation, impl)(x, w2, b)


class StripConv(jt.nn.Module):
    """Drop-in for ``nn.Conv2d(C, C, (1, k), padding=(0, k//2), groups=C)`` (``'h'``) or the
    ``(k, 1)`` version (``'v'``): parameters ``weight`` [C,1,1,k] / [C,1,k,1] and ``bias`` [C],
    initialised as Jittor's Conv2d does, so reference checkpoints load one to one."""

    def __init__(self, channels, kernel_size, orientation="h", impl="auto", bias=True):
        super().__init__()
        if orientation not in ("h", "v"):
            raise ValueError(f"orientation must be 'h' or 'v', got {orientation!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if impl not in STRIP_IMPLS:
            raise ValueError(f"impl must be one of {STRIP_IMPLS}, got {impl!r}")
        self.channels, self.kernel_size, self.orientation, self.impl = channels, kernel_size, orientation, impl
        shape = [channels, 1, 1, kernel_size] if orientation == "h" else [channels, 1, kernel_size, 1]
        self.weight = jt.init.invariant_uniform(shape, dtype="float")
        if bias:
            bound = 1 / math.sqrt(kernel_size)  # fan = in_channels/groups · kh · kw
            self.bias = jt.init.uniform([channels], dtype="float", low=-bound, high=bound)
        else:
            self.bias = None

    def execute(self, x):
        return strip_conv(x, self.weight, self.bias, self.orientation, self.impl)

    def extra_repr(self):
        k = self.kernel_size
        ks = (1, k) if self.orientation == "h" else (k, 1)
        return f"{self.channels}, kernel_size={ks}, impl={self.impl!r}"


# ----------------------------------------------------------------------------------------------
# fused MSCA strips: a + Σ_i v_i(h_i(a))
# ----------------------------------------------------------------------------------------------

def _cpu_msca_forward_src(ks, save):
    """inputs: in0 = a, in(1+4i .. 4+4i) = wh_i, bh_i, wv_i, bv_i; outputs: out0 = a + Σ v_i(h_i(a)),
    and with ``save`` out(1+i) = t_i = h_i(a) (kept for the backward pass)."""
    branches = []
    for i, k in enumerate(ks):
        wh, bh, wv, bv = (f"in{1 + 4 * i + q}_p" for q in range(4))
        tp = f"out{1 + i}_p + nc * HW" if save else "t.data()"
        branches.append(f"""
            {{  // branch {i}: 1x{k} then {k}x1
                constexpr int K = {k}, P = K / 2;
                const T* __restrict wh = {wh} + (int64_t)c * K;
                const T* __restrict wv = {wv} + (int64_t)c * K;
                T* __restrict tp = {tp};
                for (int r = 0; r < H; r++) {{
                    jsn_strip::pad_row(pad.data(), ap + (int64_t)r * W, W, P);
                    jsn_strip::hrow<K>(pad.data(), wh, {bh}[c], tp + (int64_t)r * W, W);
                }}
                jsn_strip::vplane<K>(tp, wv, {bv}[c], op, H, W, true);
            }}""")
    pmax = max(ks) // 2
    return _CPU_PRELUDE + f"""
    const T* __restrict A_ = in0_p;
    T* __restrict O = out0_p;
    #pragma omp parallel if ((int64_t)N * C * HW * {sum(ks)} > JSN_PAR_MIN)
    {{
        std::vector<T> pad(W + 2 * {pmax});
        std::vector<T> t({"0" if save else "HW"});
        #pragma omp for schedule(dynamic, 1)
        for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {{
            const int c = (int)(nc % C);
            const T* __restrict ap = A_ + nc * HW;
            T* __restrict op = O + nc * HW;
            for (int64_t q = 0; q < HW; q++) op[q] = ap[q];{''.join(branches)}
        }}
    }}
"""


def _cpu_msca_backward_src(ks):
    """inputs: in0 = a, in(1+4i .. 4+4i) = wh_i, bh_i, wv_i, bv_i, in(1+4n+i) = t_i, in(1+5n) = g;
    outputs: out0 = da, out(1+4i .. 4+4i) = dwh_i, dbh_i, dwv_i, dbv_i."""
    nb = len(ks)
    decls, branches, stores = [], [], []
    for i, k in enumerate(ks):
        wh, wv = f"in{1 + 4 * i}_p", f"in{3 + 4 * i}_p"
        decls.append(f"""
            double dwh{i}[{k}], dwv{i}[{k}], dbh{i} = 0;
            for (int j = 0; j < {k}; j++) {{ dwh{i}[j] = 0; dwv{i}[j] = 0; }}
            T whf{i}[{k}], wvf{i}[{k}];
            for (int j = 0; j < {k}; j++) {{
                whf{i}[j] = {wh}[(int64_t)c * {k} + {k} - 1 - j];
                wvf{i}[j] = {wv}[(int64_t)c * {k} + {k} - 1 - j];
            }}""")
        branches.append(f"""
                {{  // branch {i}: 1x{k} then {k}x1
                    constexpr int K = {k}, P = K / 2;
                    const T* __restrict tp = in{1 + 4 * nb + i}_p + off;   // t = h(a), saved by the forward
                    jsn_strip::vplane<K>(gp, wvf{i}, T(0), dt.data(), H, W, false);   // dt = v^T g
                    jsn_strip::vdw_plane<K>(gp, tp, dwv{i}, H, W);
                    for (int r = 0; r < H; r++) {{
                        const T* __restrict dtr = dt.data() + (int64_t)r * W;
                        jsn_strip::pad_row(pad.data(), dtr, W, P);
                        jsn_strip::hrow_add<K>(pad.data(), whf{i}, dap + (int64_t)r * W, W);   // da += h^T dt
                        dbh{i} += (double)jsn_strip::rowsum(dtr, W);
                    }}
                    jsn_strip::hdw_plane<K>(dt.data(), ap, pad.data(), dwh{i}, H, W);
                }}""")
        stores.append(f"""
            for (int j = 0; j < {k}; j++) {{
                out{1 + 4 * i}_p[(int64_t)c * {k} + j] = (T)dwh{i}[j];
                out{3 + 4 * i}_p[(int64_t)c * {k} + j] = (T)dwv{i}[j];
            }}
            out{2 + 4 * i}_p[c] = (T)dbh{i};
            out{4 + 4 * i}_p[c] = (T)dbv;""")
    pmax = max(ks) // 2
    return _CPU_PRELUDE + f"""
    const T* __restrict A_ = in0_p;
    const T* __restrict G = in{1 + 5 * nb}_p;
    T* __restrict DA = out0_p;
    #pragma omp parallel if ((int64_t)N * C * HW * {sum(ks)} > JSN_PAR_MIN)
    {{
        std::vector<T> pad(W + 2 * {pmax});
        std::vector<T> dt(HW);
        #pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < C; c++) {{{''.join(decls)}
            double dbv = 0;
            for (int n = 0; n < N; n++) {{
                const int64_t off = ((int64_t)n * C + c) * HW;
                const T* __restrict ap = A_ + off;
                const T* __restrict gp = G + off;
                T* __restrict dap = DA + off;
                for (int64_t q = 0; q < HW; q++) dap[q] = gp[q];
                for (int r = 0; r < H; r++) dbv += (double)jsn_strip::rowsum(gp + (int64_t)r * W, W);{''.join(branches)}
            }}{''.join(stores)}
        }}
    }}
"""


class _MscaStripsFunction(jt.Function):
    """Fused ``a + Σ_i v_i(h_i(a))`` (CPU kernels). When gradients are being recorded the forward
    also returns the intermediates ``t_i = h_i(a)`` (as the separate strips would keep them) so the
    backward pass need not recompute them."""

    def __init__(self, ks):
        self.ks = tuple(ks)

    def execute(self, a, *params):
        if jt.flags.no_grad:
            return jt.code(a.shape, a.dtype, [a, *params], cpu_header=_CPU_HEADER,
                           cpu_src=_cpu_msca_forward_src(self.ks, save=False))
        outs = jt.code([a.shape] * (1 + len(self.ks)), [a.dtype] * (1 + len(self.ks)), [a, *params],
                       cpu_header=_CPU_HEADER, cpu_src=_cpu_msca_forward_src(self.ks, save=True))
        for t in outs[1:]:
            t.stop_grad()
        self.saved = (a, params, outs[1:])
        return outs[0]

    def grad(self, g):
        a, params, ts = self.saved
        if g is None:
            return (None,) * (1 + len(params))
        g = g.cast(a.dtype)
        shapes = [a.shape] + [p.shape for p in params]
        outs = jt.code(shapes, [a.dtype] * len(shapes), [a, *params, *ts, g], cpu_header=_CPU_HEADER,
                       cpu_src=_cpu_msca_backward_src(self.ks))
        return tuple(outs)


def _normalise_msca_params(params, biases):
    """Accept ``[(wh, bh, wv, bv), ...]`` or (weights [h0, v0, h1, v1, ...], biases [same order])."""
    if biases is not None:
        weights = list(params)
        biases = list(biases)
        if len(weights) % 2 or len(weights) != len(biases):
            raise ValueError("msca_strips(a, weights, biases) needs matching lists [h0, v0, h1, v1, ...]")
        return [(weights[2 * i], biases[2 * i], weights[2 * i + 1], biases[2 * i + 1])
                for i in range(len(weights) // 2)]
    return [tuple(p) for p in params]


def msca_strips(a, params, biases=None, impl="auto"):
    """MSCA's strip sum ``a + Σ_i v_i(h_i(a))`` (the ``attn`` before ``conv3``).

    ``params``: one ``(wh, bh, wv, bv)`` per branch (weights [C,1,1,k] and [C,1,k,1], biases [C]),
    or, with ``biases`` given, the weights ``[h0, v0, h1, v1, ...]`` and the biases in the same order.
    ``impl``: ``'fused'`` (one CPU kernel for all branches, forward and backward), ``'separate'``
    (separate :func:`strip_conv` calls with ``impl='auto'``), one of ``'meta'``, ``'kernel'``,
    ``'conv2d'`` (separate calls with that implementation), or ``'auto'`` (:data:`AUTO_MSCA_IMPL`).
    """
    branches = _normalise_msca_params(params, biases)
    if impl == "auto":
        impl = AUTO_MSCA_IMPL[_device()]
        if impl == "fused" and str(a.dtype) not in ("float32", "float64"):
            impl = "separate"
    if impl == "fused" and jt.flags.use_cuda:
        raise NotImplementedError("msca_strips impl='fused' has no CUDA kernel; use 'separate'")
    if impl == "fused":
        if str(a.dtype) not in ("float32", "float64"):
            raise TypeError(f"msca_strips impl='fused' supports float32/float64, got {a.dtype}")
        ks, flat = [], []
        for wh, bh, wv, bv in branches:
            k = _check(a, wh, bh, "h")
            if _check(a, wv, bv, "v") != k:
                raise ValueError("each MSCA branch needs the same k for its 1×k and k×1 convs")
            ks.append(k)
            C = a.shape[1]
            flat += [wh.cast(a.dtype).reshape([C, k]), bh.cast(a.dtype), wv.cast(a.dtype).reshape([C, k]),
                     bv.cast(a.dtype)]
        return _MscaStripsFunction(ks)(a, *flat)
    sub = "auto" if impl == "separate" else impl
    if sub not in STRIP_IMPLS:
        raise ValueError(f"msca_strips impl must be 'auto', 'fused', 'separate' or one of {STRIP_IMPLS}, got {impl!r}")
    out = a
    for wh, bh, wv, bv in branches:
        out = out + strip_conv(strip_conv(a, wh, bh, "h", sub), wv, bv, "v", sub)
    return out
