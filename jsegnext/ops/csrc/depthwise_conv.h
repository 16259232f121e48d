// Square depthwise convolution (KxK, odd K, stride 1, zero "same" padding K/2, a bias per channel)
// on the CPU: C++ and OpenMP. SegNeXt runs MSCA's 5x5 conv0 and the Mlp's 3x3 dwconv with it.
//
// - Each HxW plane is copied, a few rows ahead of the computation (so that reading it from memory
//   overlaps with the arithmetic), into a per-thread zero-padded plane (K/2 zero rows above and
//   below, zero columns on both sides, rows a whole number of vectors long and aligned), so the
//   convolution loops have no bounds checks and no border cases.
// - Forward, and the input gradient (the same correlation of the output gradient with the flipped
//   kernel): blocks of 4 output rows x 4 vectors whose accumulators stay in registers over the K*K
//   taps; each loaded input vector serves every output row of the block it contributes to. Outputs
//   of 8 MiB and more are written with streaming (non-temporal) stores. Parallel over the (n, c)
//   planes.
// - Backward: one pass, parallel over channels with the batch looped inside (so the weight and bias
//   sums need no atomics); per (n, c) plane and chunk of 32 rows it writes the input gradient from
//   the padded output gradient, then sums the K*K weight-gradient taps in K*K vector accumulators
//   (each loaded input vector feeds the taps of up to 4 gradient rows; float partial sums flushed
//   to double per chunk). For K > 5 the taps are summed a few kernel rows per pass so that the
//   accumulators fit the 32 vector registers.
//
// Entry points (jsegnext/ops/depthwise_conv.py calls them through jt.code): forward<K>, backward<K>.
#ifndef JSN_DEPTHWISE_CONV_H
#define JSN_DEPTHWISE_CONV_H
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "simd.h"

// outputs of at least this many bytes are written with streaming stores
#ifndef JSN_DW_STREAM_MIN
#define JSN_DW_STREAM_MIN (8 << 20)
#endif

namespace jsn_dw {

using jsn::stream_fence;
using jsn::Vec;
using jsn::vfma;
using jsn::vload;
using jsn::vset1;
using jsn::vstore;
using jsn::vstream;
using jsn::vsum;

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
    explicit PadBuf(const Pad& g) : mem(g.size + JSN_VB / sizeof(T), T(0)) {
        const uintptr_t a = (uintptr_t)mem.data(), m = JSN_VB - 1;
        p = reinterpret_cast<T*>((a + m) & ~m);
    }
};

// R output rows × NV vectors:
//   out[rr*ys + v*L + t] = b + sum_{a,j} w[a*K + j] * xp[(rr + a)*Wp + j + v*L + t]
// Each loaded input vector serves every output row it contributes to (up to min(R, K) FMAs).
template <int K, int R, int NV, bool NT, typename T>
static inline void conv_block(const T* __restrict xp, int Wp, const T* __restrict w, T b, T* __restrict out,
                              int64_t ys) {
    typedef typename Vec<T>::type vt;
    constexpr int L = JSN_VB / sizeof(T);
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
            for (int v = 0; v < NV; v++) {
                xv[v] = vload(xr + j + v * L);
                JSN_KEEP(xv[v]);
            }
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
            if (NT)
                vstream(out + rr * ys + v * L, acc[rr][v]);
            else
                vstore(out + rr * ys + v * L, acc[rr][v]);
        }
}

// R output rows starting at padded row xp (all columns). NT: streaming stores (needs vector-aligned
// output rows and W a multiple of the vector length).
template <int K, int R, bool NT, typename T>
static inline void conv_rows(const T* __restrict xp, const T* __restrict w, T b, T* __restrict yr,
                             const Pad& g) {
    constexpr int L = JSN_VB / sizeof(T);
    constexpr int NV4 = R >= 4 ? 4 : 8 / R;  // 16 accumulators (R = 4) or 8 per full block
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
template <int K>
struct ConvRows {
    static constexpr int R = K <= 5 ? 4 : 2;
};

// whether to write an output with streaming stores: large (beyond what the caches would keep
// for the next op anyway), vector-aligned rows
template <typename T>
static inline bool use_stream(const T* out, int64_t total, int W) {
    return total * (int64_t)sizeof(T) >= JSN_DW_STREAM_MIN && W % (JSN_VB / sizeof(T)) == 0 &&
           ((uintptr_t)out % JSN_VB) == 0;
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
            std::memcpy(dst + (int64_t)(filled + g.P) * g.Wp + g.OFF, src + (int64_t)filled * g.W,
                        sizeof(T) * g.W);
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
    constexpr int L = JSN_VB / sizeof(T);
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
                JSN_KEEP(xv);
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
static inline void dw_pass(const T* __restrict gp, const T* __restrict xp, const Pad& g, int a0, int r0,
                           int r1, double* __restrict dw, double* __restrict db) {
    typedef typename Vec<T>::type vt;
    constexpr int R = NA * K <= 25 ? 4 : 2;  // keeps NA*K + 1 + R + 1 vectors in registers
    vt acc[NA * K + 1];
#pragma GCC unroll 64
    for (int q = 0; q <= NA * K; q++) acc[q] = vset1(T(0));
    const T* __restrict g0 = gp + (int64_t)g.P * g.Wp + g.OFF;
    const T* __restrict x0 = xp + (int64_t)a0 * g.Wp + g.OFF - g.P;
    int r = r0, since = 0;
    while (r < r1) {
        if (r + R <= r1) {
            dw_rows<K, NA, R, DB>(g0 + (int64_t)r * g.Wp, x0 + (int64_t)r * g.Wp, g, acc);
            r += R;
            since += R;
        } else {
            dw_rows<K, NA, 1, DB>(g0 + (int64_t)r * g.Wp, x0 + (int64_t)r * g.Wp, g, acc);
            r += 1;
            since += 1;
        }
        if (since >= 32 || r == r1) {
            for (int q = 0; q < NA * K; q++) {
                dw[a0 * K + q] += (double)vsum<T>(acc[q]);
                acc[q] = vset1(T(0));
            }
            if (DB) {
                *db += (double)vsum<T>(acc[NA * K]);
                acc[NA * K] = vset1(T(0));
            }
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

// ---------------------------------------------------------------------------------------------
// entry points

// Y = B + (KxK correlation of X [N, C, H, W] with Wt [C, 1, K, K]); parallel over the planes.
template <int K, typename T>
static inline void forward(const T* __restrict X, const T* __restrict Wt, const T* __restrict B,
                           T* __restrict Y, int N, int C, int H, int W) {
    constexpr int P = K / 2;
    const int64_t HW = (int64_t)H * W;
    const Pad g(H, W, P, JSN_VB / sizeof(T));
    const bool nt = use_stream(Y, (int64_t)N * C * HW, W);
#pragma omp parallel if ((int64_t)N * C * HW * K * K > JSN_PAR_MIN)
    {
        PadBuf<T> xpad(g);
#pragma omp for schedule(static)
        for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
            const int c = (int)(nc % C);
            if (nt)
                conv_plane_from<K, true>(X + nc * HW, xpad.p, Wt + (int64_t)c * K * K, B[c], Y + nc * HW, g);
            else
                conv_plane_from<K, false>(X + nc * HW, xpad.p, Wt + (int64_t)c * K * K, B[c], Y + nc * HW, g);
        }
        if (nt) stream_fence();
    }
}

// Gradients of forward<K> for the output gradient G: DX, DW [C, 1, K, K] and DB [C].
template <int K, typename T>
static inline void backward(const T* __restrict X, const T* __restrict Wt, const T* __restrict G,
                            T* __restrict DX, T* __restrict DW, T* __restrict DB, int N, int C, int H,
                            int W) {
    constexpr int P = K / 2;
    const int64_t HW = (int64_t)H * W;
    const Pad g(H, W, P, JSN_VB / sizeof(T));
    const bool nt = use_stream(DX, (int64_t)N * C * HW, W);
#pragma omp parallel if ((int64_t)N * C * HW * K * K > JSN_PAR_MIN)
    {
        PadBuf<T> xpad(g), gpad(g);
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            T wf[K * K];  // flipped kernel: dx is the correlation of g with it
            for (int q = 0; q < K * K; q++) wf[q] = Wt[(int64_t)c * K * K + K * K - 1 - q];
            double dw[K * K], db = 0;
            for (int q = 0; q < K * K; q++) dw[q] = 0;
            for (int n = 0; n < N; n++) {
                const int64_t off = ((int64_t)n * C + c) * HW;
                if (nt)
                    backward_plane<K, true>(X + off, G + off, xpad.p, gpad.p, wf, DX + off, g, dw, &db);
                else
                    backward_plane<K, false>(X + off, G + off, xpad.p, gpad.p, wf, DX + off, g, dw, &db);
            }
            for (int q = 0; q < K * K; q++) DW[(int64_t)c * K * K + q] = (T)dw[q];
            DB[c] = (T)db;
        }
        if (nt) stream_fence();
    }
}

}  // namespace jsn_dw
#endif  // JSN_DEPTHWISE_CONV_H
