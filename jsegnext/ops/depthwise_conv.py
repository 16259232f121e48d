"""Square depthwise convolution (k×k, odd k, stride 1, zero "same" padding k//2, per-channel bias).

SegNeXt runs two of them in every block: the 5×5 ``conv0`` of MSCA and the 3×3 ``dwconv`` of the
Mlp. On the CPU, Jittor hands ``nn.Conv2d(C, C, k, padding=k//2, groups=C)`` to oneDNN, whose
depthwise weight gradient dominated a SegNeXt-T training step. Two implementations:

* ``'kernel'`` — hand-written C++/OpenMP kernels through ``jt.code`` (float32 and float64, CPU):

  - each H×W plane is copied, a few rows ahead of the computation (so that reading it from memory
    overlaps with the arithmetic), into a per-thread zero-padded plane (``k//2`` zero rows above
    and below, zero columns on both sides, rows a whole number of vectors long and aligned), so the
    convolution loops have no bounds checks and no border cases at all;
  - forward, and the input gradient (the same correlation of the output gradient with the flipped
    kernel): blocks of 4 output rows × 4 vectors (GCC/Clang vector types, explicit FMAs) whose
    accumulators stay in registers over the k² taps; each loaded input vector serves every output
    row of the block it contributes to. Outputs of 8 MiB and more are written with streaming
    (non-temporal) stores. Parallel over the (n, c) planes;
  - backward: one kernel, parallel over channels with the batch looped inside (so the weight and
    bias sums need no atomics); per (n, c) plane and chunk of 32 rows it writes the input gradient
    from the padded output gradient, then sums the k² weight-gradient taps in k² vector
    accumulators (each loaded input vector feeds the taps of up to 4 gradient rows; no horizontal
    reduction in the loop; float partial sums flushed to double per chunk). For k > 5 the taps are
    summed a few kernel rows per pass so the accumulators fit the 32 vector registers.

* ``'conv2d'`` — what ``nn.Conv2d(groups=C)`` does (oneDNN on the CPU, Jittor's DepthwiseConv on
  CUDA); the baseline and the fallback.

``'auto'`` resolves to :data:`AUTO_IMPL` for the current device (``JSEGNEXT_DW_IMPL`` in the
environment overrides it); there is no CUDA kernel, so CUDA always runs ``'conv2d'``.
"""
import math
import os

from ..runtime import jt

__all__ = ["depthwise_conv2d", "DepthwiseConv2d", "DW_IMPLS", "AUTO_IMPL", "resolve_impl"]

#: Values accepted for ``impl``.
DW_IMPLS = ("auto", "kernel", "conv2d")

#: What ``impl='auto'`` means on each device. CPU: the C++ kernel beats oneDNN on every depthwise
#: conv shape of SegNeXt-T at 512², batch 2 (``benchmarks/bench_depthwise.py``, 2 threads, 2-core
#: AVX-512 Xeon: forward 2.4-18×, forward+backward 6.6-14×; a whole training step 2.68 s -> 2.06 s);
#: CUDA: there is no kernel here.
AUTO_IMPL = {"cpu": "kernel", "cuda": "conv2d"}

_ENV_IMPL = "JSEGNEXT_DW_IMPL"


def _device():
    return "cuda" if jt.flags.use_cuda else "cpu"


def _kernel_supports(dtype):
    return not jt.flags.use_cuda and str(dtype) in ("float32", "float64")


def resolve_impl(impl="auto", dtype="float32"):
    """The concrete implementation (``'kernel'`` or ``'conv2d'``) that ``impl`` stands for on the
    current device and dtype."""
    if impl not in DW_IMPLS:
        raise ValueError(f"impl must be one of {DW_IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = os.environ.get(_ENV_IMPL) or AUTO_IMPL[_device()]
        if impl not in DW_IMPLS[1:]:
            raise ValueError(f"{_ENV_IMPL} must be one of {DW_IMPLS[1:]}, got {impl!r}")
        if impl == "kernel" and not _kernel_supports(dtype):
            impl = "conv2d"
    elif impl == "kernel" and not _kernel_supports(dtype):
        raise TypeError(f"depthwise_conv2d impl='kernel' has no {_device()} kernel for {dtype} "
                        "(CPU float32/float64 only); use 'conv2d' or 'auto'")
    return impl


def _check(x, weight, bias):
    if x.ndim != 4:
        raise ValueError(f"depthwise_conv2d expects NCHW input, got shape {list(x.shape)}")
    C = x.shape[1]
    wshape = list(weight.shape)
    if len(wshape) != 4 or wshape[0] != C or wshape[1] != 1 or wshape[2] != wshape[3]:
        raise ValueError(f"weight must be [C,1,k,k] with C={C}, got {wshape}")
    k = wshape[2]
    if k % 2 != 1:
        raise ValueError(f"depthwise_conv2d needs an odd kernel size, got {k}")
    if bias is not None and list(bias.shape) != [C]:
        raise ValueError(f"bias must have shape [{C}], got {list(bias.shape)}")
    return k


# ----------------------------------------------------------------------------------------------
# hand-written kernels: C++ / OpenMP
# ----------------------------------------------------------------------------------------------

_CPU_HEADER = r"""
#include <vector>
#include <algorithm>
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__) || defined(__AVX__) || defined(__FMA__)
#include <immintrin.h>
#endif
#ifndef JSN_DW_CPU_HELPERS
#define JSN_DW_CPU_HELPERS
// below this many multiply-adds a kernel runs on one thread (the fork/join costs more)
#define JSN_DW_PAR_MIN (1 << 17)
// outputs of at least this many bytes are written with streaming stores
#ifndef JSN_DW_STREAM_MIN
#define JSN_DW_STREAM_MIN (8 << 20)
#endif
#if defined(__AVX512F__)
#define JSN_DW_VB 64
#elif defined(__AVX__)
#define JSN_DW_VB 32
#else
#define JSN_DW_VB 16
#endif
namespace jsn_dw {

#if defined(__GNUC__)
// GCC/Clang vector of JSN_DW_VB bytes, loadable/storable at any element-aligned address
template <typename T> struct Vec { typedef T type __attribute__((vector_size(JSN_DW_VB), aligned(sizeof(T)))); };
template <typename T>
static inline typename Vec<T>::type vload(const T* p) { return *reinterpret_cast<const typename Vec<T>::type*>(p); }
template <typename T>
static inline void vstore(T* p, typename Vec<T>::type v) { *reinterpret_cast<typename Vec<T>::type*>(p) = v; }
template <typename T>
static inline typename Vec<T>::type vset1(T s) { return typename Vec<T>::type{} + s; }
// acc + a * b as one fused multiply-add. Through the intrinsics where there are any, so that
// -Ofast's re-association cannot turn a chain of FMAs into separate multiplies and adds.
#if JSN_DW_VB == 64 && defined(__AVX512F__)
static inline Vec<float>::type vfma(Vec<float>::type acc, Vec<float>::type a, Vec<float>::type b) {
    return (Vec<float>::type)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)acc);
}
static inline Vec<double>::type vfma(Vec<double>::type acc, Vec<double>::type a, Vec<double>::type b) {
    return (Vec<double>::type)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)acc);
}
#elif JSN_DW_VB == 32 && defined(__FMA__)
static inline Vec<float>::type vfma(Vec<float>::type acc, Vec<float>::type a, Vec<float>::type b) {
    return (Vec<float>::type)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)acc);
}
static inline Vec<double>::type vfma(Vec<double>::type acc, Vec<double>::type a, Vec<double>::type b) {
    return (Vec<double>::type)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)acc);
}
#else
template <typename V>
static inline V vfma(V acc, V a, V b) { return acc + a * b; }
#endif
// Non-temporal (streaming) store of a whole vector to a vector-aligned address: large outputs
// skip the read-for-ownership and do not evict the inputs from the caches.
#if JSN_DW_VB == 64 && defined(__AVX512F__)
static inline void vstream(float* p, Vec<float>::type v) { _mm512_stream_ps(p, (__m512)v); }
static inline void vstream(double* p, Vec<double>::type v) { _mm512_stream_pd(p, (__m512d)v); }
static inline void stream_fence() { _mm_sfence(); }
#elif JSN_DW_VB == 32 && defined(__AVX__)
static inline void vstream(float* p, Vec<float>::type v) { _mm256_stream_ps(p, (__m256)v); }
static inline void vstream(double* p, Vec<double>::type v) { _mm256_stream_pd(p, (__m256d)v); }
static inline void stream_fence() { _mm_sfence(); }
#else
template <typename T, typename V>
static inline void vstream(T* p, V v) { vstore(p, v); }
static inline void stream_fence() {}
#endif
// Keep a loaded vector in a register: stops GCC from folding the same (unaligned, often cache-line
// splitting) load into every FMA that uses it, which would undo the load reuse of the row blocks.
#if defined(__x86_64__) || defined(__i386__)
#define JSN_DW_KEEP(v) __asm__("" : "+v"(v))
#else
#define JSN_DW_KEEP(v) ((void)0)
#endif
template <typename T>
static inline T vsum(typename Vec<T>::type v) {
    T s = T(0);
    for (int t = 0; t < (int)(JSN_DW_VB / sizeof(T)); t++) s += v[t];
    return s;
}
#else
#define JSN_DW_KEEP(v) ((void)0)
// portable stand-in (plain arrays; the compiler may still vectorise the element loops)
template <typename T> struct VecS {
    T v[JSN_DW_VB / sizeof(T)];
    VecS& operator+=(const VecS& o) { for (int t = 0; t < (int)(JSN_DW_VB / sizeof(T)); t++) v[t] += o.v[t]; return *this; }
};
template <typename T> struct Vec { typedef VecS<T> type; };
template <typename T> static inline VecS<T> operator*(T s, const VecS<T>& a) {
    VecS<T> r; for (int t = 0; t < (int)(JSN_DW_VB / sizeof(T)); t++) r.v[t] = s * a.v[t]; return r;
}
template <typename T> static inline VecS<T> operator*(const VecS<T>& a, const VecS<T>& b) {
    VecS<T> r; for (int t = 0; t < (int)(JSN_DW_VB / sizeof(T)); t++) r.v[t] = a.v[t] * b.v[t]; return r;
}
template <typename T>
static inline VecS<T> vload(const T* p) { VecS<T> r; std::memcpy(r.v, p, JSN_DW_VB); return r; }
template <typename T>
static inline void vstore(T* p, const VecS<T>& v) { std::memcpy(p, v.v, JSN_DW_VB); }
template <typename T>
static inline VecS<T> vset1(T s) { VecS<T> r; for (int t = 0; t < (int)(JSN_DW_VB / sizeof(T)); t++) r.v[t] = s; return r; }
template <typename T>
static inline void vstream(T* p, const VecS<T>& v) { vstore(p, v); }
static inline void stream_fence() {}
template <typename T>
static inline VecS<T> vfma(VecS<T> acc, const VecS<T>& a, const VecS<T>& b) { acc += a * b; return acc; }
template <typename T>
static inline T vsum(const VecS<T>& a) { T s = T(0); for (int t = 0; t < (int)(JSN_DW_VB / sizeof(T)); t++) s += a.v[t]; return s; }
#endif

// Geometry of the zero-padded copy of one H×W plane: P zero rows above and below; the plane's
// columns start at column OFF = P rounded up to whole vectors (so rows of g load aligned), then
// zeros up to a row length Wp (a whole number of vectors) of at least OFF + Wb + P, Wb = W rounded
// up to whole vectors. The buffer itself is aligned to a vector.
struct Pad {
    int H, W, P, L, Wb, OFF, Wp;
    int64_t size;
    Pad(int H_, int W_, int P_, int L_) : H(H_), W(W_), P(P_), L(L_) {
        Wb = (W + L - 1) / L * L;
        OFF = (P + L - 1) / L * L;
        Wp = OFF + Wb + OFF;
        size = (int64_t)(H + 2 * P) * Wp;
    }
};

// a zeroed, vector-aligned buffer for one padded plane
template <typename T>
struct PadBuf {
    std::vector<T> mem;
    T* p;
    explicit PadBuf(const Pad& g) : mem(g.size + JSN_DW_VB / sizeof(T), T(0)) {
        const uintptr_t a = (uintptr_t)mem.data(), m = JSN_DW_VB - 1;
        p = reinterpret_cast<T*>((a + m) & ~m);
    }
};

// R output rows × NV vectors:
//   out[rr*ys + v*L + t] = b + sum_{a,j} w[a*K + j] * xp[(rr + a)*Wp + j + v*L + t]
// Each loaded input vector serves every output row it contributes to (up to min(R, K) FMAs).
template <int K, int R, int NV, bool NT, typename T>
static inline void conv_block(const T* __restrict xp, int Wp, const T* __restrict w, T b,
                              T* __restrict out, int64_t ys) {
    typedef typename Vec<T>::type vt;
    constexpr int L = JSN_DW_VB / sizeof(T);
    vt acc[R][NV];
#pragma GCC unroll 8
    for (int rr = 0; rr < R; rr++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[rr][v] = vset1(b);
#pragma GCC unroll 24
    for (int s = 0; s < R + K - 1; s++) {
        const T* __restrict xr = xp + (int64_t)s * Wp;
#pragma GCC unroll 16
        for (int j = 0; j < K; j++) {
            vt xv[NV];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) { xv[v] = vload(xr + j + v * L); JSN_DW_KEEP(xv[v]); }
#pragma GCC unroll 8
            for (int rr = 0; rr < R; rr++) {
                const int a = s - rr;
                if (a < 0 || a >= K) continue;
                const vt wj = vset1(w[a * K + j]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) acc[rr][v] = vfma(acc[rr][v], wj, xv[v]);
            }
        }
    }
#pragma GCC unroll 8
    for (int rr = 0; rr < R; rr++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            if (NT) vstream(out + rr * ys + v * L, acc[rr][v]);
            else vstore(out + rr * ys + v * L, acc[rr][v]);
        }
}

// R output rows starting at padded row xp (all columns). NT: streaming stores (needs vector-aligned
// output rows and W a multiple of the vector length).
template <int K, int R, bool NT, typename T>
static inline void conv_rows(const T* __restrict xp, const T* __restrict w, T b, T* __restrict yr, const Pad& g) {
    constexpr int L = JSN_DW_VB / sizeof(T);
    constexpr int NV4 = R >= 4 ? 4 : 8 / R;   // 16 accumulators (R = 4) or 8 per full block
    const int W = g.W, Wp = g.Wp;
    int i = 0;
    for (; i + NV4 * L <= W; i += NV4 * L) conv_block<K, R, NV4, NT>(xp + i, Wp, w, b, yr + i, W);
    for (; i + L <= W; i += L) conv_block<K, R, 1, NT>(xp + i, Wp, w, b, yr + i, W);
    if (i < W) {  // last partial vector: the padded rows are wide enough to compute it whole
        T tmp[R * L];
        conv_block<K, R, 1, false>(xp + i, Wp, w, b, tmp, L);
        for (int rr = 0; rr < R; rr++)
            for (int t = 0; t < W - i; t++) yr[(int64_t)rr * W + i + t] = tmp[rr * L + t];
    }
}

// rows per conv block: R output rows share each loaded input vector
template <int K> struct ConvRows { static constexpr int R = K <= 5 ? 4 : 2; };

// whether to write an output with streaming stores: large (beyond what the caches would keep
// for the next op anyway), vector-aligned rows
template <typename T>
static inline bool use_stream(const T* out, int64_t total, int W) {
    return total * (int64_t)sizeof(T) >= JSN_DW_STREAM_MIN && W % (JSN_DW_VB / sizeof(T)) == 0 &&
           ((uintptr_t)out % JSN_DW_VB) == 0;
}

// Copies source rows into a padded plane on demand, so that reading a plane from memory is spread
// over (and overlaps with) the computation on the rows already there.
template <typename T>
struct RowFill {
    const T* __restrict src;
    T* __restrict dst;
    const Pad& g;
    int filled;
    RowFill(const T* s, T* d, const Pad& g_) : src(s), dst(d), g(g_), filled(0) {}
    // make source rows [0, rows) available
    inline void to(int rows) {
        if (rows > g.H) rows = g.H;
        for (; filled < rows; filled++)
            std::memcpy(dst + (int64_t)(filled + g.P) * g.Wp + g.OFF, src + (int64_t)filled * g.W, sizeof(T) * g.W);
    }
};

// y = b + (K×K correlation of the plane src with w), through the padded buffer xpad
template <int K, bool NT, typename T>
static inline void conv_plane_from(const T* __restrict src, T* __restrict xpad, const T* __restrict w, T b,
                                   T* __restrict y, const Pad& g) {
    constexpr int R = ConvRows<K>::R, P = K / 2;
    RowFill<T> fill(src, xpad, g);
    const T* __restrict x0 = xpad + g.OFF - P;
    int r = 0;
    for (; r + R <= g.H; r += R) {
        fill.to(r + R + P);
        conv_rows<K, R, NT>(x0 + (int64_t)r * g.Wp, w, b, y + (int64_t)r * g.W, g);
    }
    for (; r < g.H; r++) {
        fill.to(r + 1 + P);
        conv_rows<K, 1, NT>(x0 + (int64_t)r * g.Wp, w, b, y + (int64_t)r * g.W, g);
    }
}

// Weight-gradient taps of kernel rows a0 .. a0+NA-1 (and, with DB, the bias gradient), R rows of
// g at a time (each loaded x vector serves up to R taps):
//   acc[a*K + j] += g[r + rr, i..] * x[r + rr + a0 + a - P, i + j - P ..]
template <int K, int NA, int R, bool DB, typename T>
static inline void dw_rows(const T* __restrict gr, const T* __restrict x0, const Pad& g,
                           typename Vec<T>::type* __restrict acc) {
    typedef typename Vec<T>::type vt;
    constexpr int L = JSN_DW_VB / sizeof(T);
    const int Wp = g.Wp, Wb = g.Wb;
    for (int i = 0; i < Wb; i += L) {
        vt gv[R];
#pragma GCC unroll 8
        for (int rr = 0; rr < R; rr++) {
            gv[rr] = vload(gr + (int64_t)rr * Wp + i);
            if (DB) acc[NA * K] += gv[rr];
        }
#pragma GCC unroll 24
        for (int s = 0; s < R + NA - 1; s++) {
#pragma GCC unroll 16
            for (int j = 0; j < K; j++) {
                vt xv = vload(x0 + (int64_t)s * Wp + i + j);
                JSN_DW_KEEP(xv);
#pragma GCC unroll 8
                for (int rr = 0; rr < R; rr++) {
                    const int a = s - rr;
                    if (a < 0 || a >= NA) continue;
                    acc[a * K + j] = vfma(acc[a * K + j], gv[rr], xv);
                }
            }
        }
    }
}

// dw[a*K + j] += sum_{r in [r0, r1), i} g[r, i] * x[r + a - P, i + j - P] for a in [a0, a0 + NA),
// and with DB db += the sum of those g; gp, xp padded planes (g is zero in the padding, so whole
// vectors up to Wb need no tail). Float partial sums, flushed to double every 32 rows.
template <int K, int NA, bool DB, typename T>
static inline void dw_pass(const T* __restrict gp, const T* __restrict xp, const Pad& g, int a0, int r0, int r1,
                           double* __restrict dw, double* __restrict db) {
    typedef typename Vec<T>::type vt;
    constexpr int R = NA * K <= 25 ? 4 : 2;   // keeps NA*K + 1 + R + 1 vectors in registers
    vt acc[NA * K + 1];
#pragma GCC unroll 64
    for (int q = 0; q <= NA * K; q++) acc[q] = vset1(T(0));
    const T* __restrict g0 = gp + (int64_t)g.P * g.Wp + g.OFF;
    const T* __restrict x0 = xp + (int64_t)a0 * g.Wp + g.OFF - g.P;
    int r = r0, since = 0;
    while (r < r1) {
        if (r + R <= r1) {
            dw_rows<K, NA, R, DB>(g0 + (int64_t)r * g.Wp, x0 + (int64_t)r * g.Wp, g, acc);
            r += R; since += R;
        } else {
            dw_rows<K, NA, 1, DB>(g0 + (int64_t)r * g.Wp, x0 + (int64_t)r * g.Wp, g, acc);
            r += 1; since += 1;
        }
        if (since >= 32 || r == r1) {
            for (int q = 0; q < NA * K; q++) {
                dw[a0 * K + q] += (double)vsum<T>(acc[q]);
                acc[q] = vset1(T(0));
            }
            if (DB) { *db += (double)vsum<T>(acc[NA * K]); acc[NA * K] = vset1(T(0)); }
            since = 0;
        }
    }
}

// all K*K weight-gradient taps and the bias gradient of rows [r0, r1), RA kernel rows per pass
// (RA*K vector accumulators + 1 for the bias stay within the 32 AVX-512 registers for K <= 5)
template <int K, typename T>
static inline void dw_chunk(const T* __restrict gp, const T* __restrict xp, const Pad& g, int r0, int r1,
                            double* __restrict dw, double* __restrict db) {
    constexpr int RA = K * K <= 25 ? K : (24 / K > 0 ? 24 / K : 1);
    constexpr int NFULL = K / RA, REM = K % RA;
    dw_pass<K, RA, true>(gp, xp, g, 0, r0, r1, dw, db);
    for (int p = 1; p < NFULL; p++) dw_pass<K, RA, false>(gp, xp, g, p * RA, r0, r1, dw, db);
    if (REM) dw_pass<K, (REM > 0 ? REM : 1), false>(gp, xp, g, NFULL * RA, r0, r1, dw, db);
}

// Backward of one (n, c) plane: dx = correlation of g with the flipped kernel wf, and the weight and
// bias gradient sums. Chunks of 32 rows: the chunk's rows of x and g are copied into the padded
// planes a conv block at a time as dx needs them, then the chunk's weight-gradient taps are summed.
template <int K, bool NT, typename T>
static inline void backward_plane(const T* __restrict xs, const T* __restrict gs, T* __restrict xpad,
                                  T* __restrict gpad, const T* __restrict wf, T* __restrict dx, const Pad& g,
                                  double* __restrict dw, double* __restrict db) {
    constexpr int R = ConvRows<K>::R, P = K / 2, CH = 32;
    RowFill<T> fx(xs, xpad, g), fg(gs, gpad, g);
    const T* __restrict g0 = gpad + g.OFF - P;
    for (int r0 = 0; r0 < g.H; r0 += CH) {
        const int r1 = std::min(g.H, r0 + CH);
        int r = r0;
        for (; r + R <= r1; r += R) {
            fx.to(r + R + P);
            fg.to(r + R + P);
            conv_rows<K, R, NT>(g0 + (int64_t)r * g.Wp, wf, T(0), dx + (int64_t)r * g.W, g);
        }
        for (; r < r1; r++) {
            fx.to(r + 1 + P);
            fg.to(r + 1 + P);
            conv_rows<K, 1, NT>(g0 + (int64_t)r * g.Wp, wf, T(0), dx + (int64_t)r * g.W, g);
        }
        dw_chunk<K>(gpad, xpad, g, r0, r1, dw, db);
    }
}

}  // namespace jsn_dw
#endif
"""

_CPU_PRELUDE = r"""
    typedef in0_type T;
    const int N = in0_shape0, C = in0_shape1, H = in0_shape2, W = in0_shape3;
    const int64_t HW = (int64_t)H * W;
"""


def _cpu_forward_src(k):
    """in0 = x [N,C,H,W], in1 = weight [C,1,k,k], in2 = bias [C]; out0 = y."""
    return _CPU_PRELUDE + f"""
    constexpr int K = {k}, P = K / 2;
    const T* __restrict X = in0_p;
    const T* __restrict Wt = in1_p;
    const T* __restrict B = in2_p;
    T* __restrict Y = out0_p;
    const jsn_dw::Pad g(H, W, P, JSN_DW_VB / sizeof(T));
    const bool nt = jsn_dw::use_stream(Y, (int64_t)N * C * HW, W);
    #pragma omp parallel if ((int64_t)N * C * HW * K * K > JSN_DW_PAR_MIN)
    {{
        jsn_dw::PadBuf<T> xpad(g);
        #pragma omp for schedule(static)
        for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {{
            const int c = (int)(nc % C);
            if (nt) jsn_dw::conv_plane_from<K, true>(X + nc * HW, xpad.p, Wt + (int64_t)c * K * K, B[c], Y + nc * HW, g);
            else jsn_dw::conv_plane_from<K, false>(X + nc * HW, xpad.p, Wt + (int64_t)c * K * K, B[c], Y + nc * HW, g);
        }}
        if (nt) jsn_dw::stream_fence();
    }}
"""


def _cpu_backward_src(k):
    """in0 = x, in1 = weight [C,1,k,k], in2 = g (output gradient); out0 = dx, out1 = dw, out2 = db."""
    return _CPU_PRELUDE + f"""
    constexpr int K = {k}, P = K / 2;
    const T* __restrict X = in0_p;
    const T* __restrict Wt = in1_p;
    const T* __restrict G = in2_p;
    T* __restrict DX = out0_p;
    T* __restrict DW = out1_p;
    T* __restrict DB = out2_p;
    const jsn_dw::Pad g(H, W, P, JSN_DW_VB / sizeof(T));
    const bool nt = jsn_dw::use_stream(DX, (int64_t)N * C * HW, W);
    #pragma omp parallel if ((int64_t)N * C * HW * K * K > JSN_DW_PAR_MIN)
    {{
        jsn_dw::PadBuf<T> xpad(g), gpad(g);
        #pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {{
            T wf[K * K];   // flipped kernel: dx is the correlation of g with it
            for (int q = 0; q < K * K; q++) wf[q] = Wt[(int64_t)c * K * K + K * K - 1 - q];
            double dw[K * K], db = 0;
            for (int q = 0; q < K * K; q++) dw[q] = 0;
            for (int n = 0; n < N; n++) {{
                const int64_t off = ((int64_t)n * C + c) * HW;
                if (nt) jsn_dw::backward_plane<K, true>(X + off, G + off, xpad.p, gpad.p, wf, DX + off, g, dw, &db);
                else jsn_dw::backward_plane<K, false>(X + off, G + off, xpad.p, gpad.p, wf, DX + off, g, dw, &db);
            }}
            for (int q = 0; q < K * K; q++) DW[(int64_t)c * K * K + q] = (T)dw[q];
            DB[c] = (T)db;
        }}
        if (nt) jsn_dw::stream_fence();
    }}
"""


def _kernel_forward(x, w, b, k):
    return jt.code(x.shape, x.dtype, [x, w, b], cpu_header=_CPU_HEADER, cpu_src=_cpu_forward_src(k))


def _kernel_backward(x, w, g, k):
    return jt.code([x.shape, w.shape, [x.shape[1]]], [x.dtype] * 3, [x, w, g],
                   cpu_header=_CPU_HEADER, cpu_src=_cpu_backward_src(k))


class _DepthwiseConvFunction(jt.Function):
    """Forward and backward of one k×k depthwise conv with the CPU kernels."""

    def __init__(self, k):
        self.k = k

    def execute(self, x, w, b):
        self.saved = (x, w)
        return _kernel_forward(x, w, b, self.k)

    def grad(self, g):
        x, w = self.saved
        if g is None:
            return None, None, None
        dx, dw, db = _kernel_backward(x, w, g.cast(x.dtype), self.k)
        return dx, dw, db


def _conv2d(x, weight, bias, k):
    p = k // 2
    if jt.flags.use_cuda:
        # what nn.Conv2d(groups=C) does on CUDA: Jittor's DepthwiseConv op, then the bias
        from jittor.depthwise_conv import DepthwiseConv

        y = DepthwiseConv(1, p, 1)(x, weight)
        return y if bias is None else y + bias.broadcast(y.shape, [0, 2, 3])
    # The same graph nn.Conv2d(groups=C).execute builds on the CPU (compile options included), which
    # Jittor's conv tuner turns into oneDNN convolutions forward and backward (the functional
    # jt.nn.conv2d has other compile options and a much slower backward).
    N, C, H, W = x.shape
    shape = [N, C, 1, 1, H, W, k, k]
    xx = x.reindex(shape, ["i0", "i1+i3", f"i4-{p}+i6", f"i5-{p}+i7"])
    ww = weight.reindex(shape, ["i1+i2", "i3", "i6", "i7"])
    ww.compile_options = xx.compile_options = {"G": C, "C": C}
    y = (xx * ww).reindex_reduce("add", [N, C, H, W], ["i0", "i1+i2", "i4", "i5"])
    return y if bias is None else y + bias.broadcast(y.shape, [0, 2, 3])


def depthwise_conv2d(x, weight, bias=None, impl="auto"):
    """Depthwise k×k convolution of NCHW ``x`` with ``weight`` [C,1,k,k] (odd k), zero "same"
    padding k//2, stride 1 and optional ``bias`` [C]: the result of
    ``nn.Conv2d(C, C, k, padding=k//2, groups=C)``. Differentiable in ``x``, ``weight`` and ``bias``.

    ``impl``: ``'kernel'`` (CPU C++/OpenMP kernels, float32/float64), ``'conv2d'`` (Jittor's
    convolution: oneDNN on the CPU) or ``'auto'`` (:data:`AUTO_IMPL`, ``JSEGNEXT_DW_IMPL``).
    """
    k = _check(x, weight, bias)
    impl = resolve_impl(impl, x.dtype)
    w = weight.cast(x.dtype)
    b = None if bias is None else bias.cast(x.dtype)
    if impl == "conv2d":
        return _conv2d(x, w, b, k)
    if b is None:
        b = jt.zeros([x.shape[1]], dtype=x.dtype).stop_grad()
    return _DepthwiseConvFunction(k)(x, w, b)


class DepthwiseConv2d(jt.nn.Module):
    """Drop-in for ``nn.Conv2d(C, C, k, padding=k//2, groups=C, bias=bias)`` (odd k): parameters
    ``weight`` [C,1,k,k] and ``bias`` [C] initialised as Jittor's Conv2d does, so checkpoints of
    the nn.Conv2d version load one to one."""

    def __init__(self, channels, kernel_size, bias=True, impl="auto"):
        super().__init__()
        if not isinstance(kernel_size, int):
            kh, kw = kernel_size
            if kh != kw:
                raise ValueError(f"DepthwiseConv2d needs a square kernel, got {kernel_size}")
            kernel_size = kh
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if impl not in DW_IMPLS:
            raise ValueError(f"impl must be one of {DW_IMPLS}, got {impl!r}")
        self.channels, self.kernel_size, self.impl = channels, kernel_size, impl
        self.weight = jt.init.invariant_uniform([channels, 1, kernel_size, kernel_size], dtype="float")
        if bias:
            bound = 1 / math.sqrt(kernel_size * kernel_size)  # fan = in_channels/groups · kh · kw
            self.bias = jt.init.uniform([channels], dtype="float", low=-bound, high=bound)
        else:
            self.bias = None

    def execute(self, x):
        return depthwise_conv2d(x, self.weight, self.bias, self.impl)

    def extra_repr(self):
        k = self.kernel_size
        return f"{self.channels}, kernel_size=({k}, {k}), padding={k // 2}, impl={self.impl!r}"
