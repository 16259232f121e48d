// Depthwise strip convolutions (1xK along W, "h"; Kx1 along H, "v") on the CPU: C++ and OpenMP.
//
// Odd K, zero "same" padding K/2, stride 1, a bias per channel; NCHW. The kernel length is a
// compile-time constant, rows are register-blocked vector loops (simd.h), and each backward pass
// is parallel over channels so that the weight-gradient sums need no atomics. Weight-gradient
// partial sums are float (per vector lane), flushed to double every 32 rows.
//
// Entry points (jsegnext/ops/strip_conv.py calls them through jt.code):
//   forward<K, V>        y = b + strip(x), V: the Kx1 ("v") strip
//   backward<K, V>       dx, dw, db of one strip
//   msca_forward<K...>   MSCA's a + sum_i v_i(h_i(a)) over the branches, plane by plane
//   msca_backward<K...>  its gradients
#ifndef JSN_STRIP_CONV_H
#define JSN_STRIP_CONV_H
#include <algorithm>
#include <cstdint>
#include <vector>

#include "simd.h"

namespace jsn_strip {

using jsn::Vec;
using jsn::vload;
using jsn::vstore;

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
    for (int i = 0; i < P; i++) {
        pad[i] = T(0);
        pad[P + n + i] = T(0);
    }
    for (int i = 0; i < n; i++) pad[P + i] = src[i];
}

#if defined(__GNUC__)
// One output row segment of NV vectors for vplane: accumulators stay in registers over the taps.
template <int K, int NV, typename T>
static inline void vplane_block(const T* __restrict x, const T* __restrict w, T b, T* __restrict yr, int r,
                                int W, int i, int jlo, int jhi, bool add) {
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
static inline void vplane(const T* __restrict x, const T* __restrict w, T b, T* __restrict y, int H, int W,
                          bool add) {
    constexpr int P = K / 2, L = JSN_VB / sizeof(T);
    for (int r = 0; r < H; r++) {
        T* __restrict yr = y + (int64_t)r * W;
        const int jlo = std::max(0, P - r), jhi = std::min(K, H + P - r);
        int i = 0;
        for (; i + 4 * L <= W; i += 4 * L) vplane_block<K, 4>(x, w, b, yr, r, W, i, jlo, jhi, add);
        if (i + 2 * L <= W) {
            vplane_block<K, 2>(x, w, b, yr, r, W, i, jlo, jhi, add);
            i += 2 * L;
        }
        if (i + L <= W) {
            vplane_block<K, 1>(x, w, b, yr, r, W, i, jlo, jhi, add);
            i += L;
        }
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
static inline void vplane(const T* __restrict x, const T* __restrict w, T b, T* __restrict y, int H, int W,
                          bool add) {
    constexpr int P = K / 2;
    for (int r = 0; r < H; r++) {
        T* __restrict yr = y + (int64_t)r * W;
        const int jlo = std::max(0, P - r), jhi = std::min(K, H + P - r);
        if (jhi - jlo == K) {
            // interior row: all K source rows exist; accumulate in registers over column blocks
            const T* __restrict x0 = x + (int64_t)(r - P) * W;
            int i = 0;
            constexpr int BW = 64 / sizeof(T) * 2;  // two cache lines of columns
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
            if (add) {
                for (int i = 0; i < W; i++) yr[i] += b;
            } else {
                for (int i = 0; i < W; i++) yr[i] = b;
            }
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

#if defined(__GNUC__)
// dw[j] += the lanes of acc[j] (summed first to last), then acc[j] = 0, for j < K
template <int K, typename T>
static inline void flush(typename Vec<T>::type* __restrict acc, double* __restrict dw) {
    constexpr int L = JSN_VB / sizeof(T);
    for (int j = 0; j < K; j++) {
        T s = T(0);
        for (int t = 0; t < L; t++) s += acc[j][t];
        dw[j] += (double)s;
        acc[j] = typename Vec<T>::type{};
    }
}
#endif

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
        if ((r & 31) == 31 || r == H - 1) flush<K, T>(acc, dw);
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
static inline void vdw_plane_dot(const T* __restrict g, const T* __restrict x, double* __restrict dw, int H,
                                 int W) {
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
static inline void vdw_plane_vec(const T* __restrict g, const T* __restrict x, double* __restrict dw, int H,
                                 int W) {
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
            if ((r & 31) == 31 || r == H - 1) flush<K, T>(acc, dw);
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
static inline void vdw_plane(const T* __restrict g, const T* __restrict x, double* __restrict dw, int H,
                             int W) {
#if defined(__GNUC__)
    if (!(K <= 7 && W >= 128)) {
        vdw_plane_vec<K>(g, x, dw, H, W);
        return;
    }
#endif
    vdw_plane_dot<K>(g, x, dw, H, W);
}

// ---------------------------------------------------------------------------------------------
// one strip conv

// y = b + (x correlated with w along W, or along H with V) over one HxW plane; pad: W + K - 1 values
template <int K, bool V, typename T>
static inline void conv_plane(const T* __restrict x, const T* __restrict w, T b, T* __restrict y,
                              T* __restrict pad, int H, int W) {
    if (V) {
        vplane<K>(x, w, b, y, H, W, false);
    } else {
        for (int r = 0; r < H; r++) {
            pad_row(pad, x + (int64_t)r * W, W, K / 2);
            hrow<K>(pad, w, b, y + (int64_t)r * W, W);
        }
    }
}

// Y = B + strip(X) for X [N, C, H, W], Wt [C, K], B [C]; parallel over the planes.
template <int K, bool V, typename T>
static inline void forward(const T* __restrict X, const T* __restrict Wt, const T* __restrict B,
                           T* __restrict Y, int N, int C, int H, int W) {
    const int64_t HW = (int64_t)H * W;
#pragma omp parallel if ((int64_t)N * C * HW * K > JSN_PAR_MIN)
    {
        std::vector<T> pad(W + K - 1);
#pragma omp for schedule(dynamic, 1)
        for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
            const int c = (int)(nc % C);
            conv_plane<K, V>(X + nc * HW, Wt + (int64_t)c * K, B[c], Y + nc * HW, pad.data(), H, W);
        }
    }
}

// Gradients of forward<K, V> for the output gradient G: DX (the correlation of G with the flipped
// kernel), DW [C, K] and DB [C]; parallel over channels, the batch looped inside.
template <int K, bool V, typename T>
static inline void backward(const T* __restrict X, const T* __restrict Wt, const T* __restrict G,
                            T* __restrict DX, T* __restrict DW, T* __restrict DB, int N, int C, int H,
                            int W) {
    const int64_t HW = (int64_t)H * W;
#pragma omp parallel if ((int64_t)N * C * HW * K > JSN_PAR_MIN)
    {
        std::vector<T> pad(W + K - 1);
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < C; c++) {
            T wf[K];
            for (int j = 0; j < K; j++) wf[j] = Wt[(int64_t)c * K + K - 1 - j];
            double dw[K];
            for (int j = 0; j < K; j++) dw[j] = 0;
            double db = 0;
            for (int n = 0; n < N; n++) {
                const int64_t off = ((int64_t)n * C + c) * HW;
                conv_plane<K, V>(G + off, wf, T(0), DX + off, pad.data(), H, W);
                if (V)
                    vdw_plane<K>(G + off, X + off, dw, H, W);
                else
                    hdw_plane<K>(G + off, X + off, pad.data(), dw, H, W);
                for (int r = 0; r < H; r++) db += (double)rowsum(G + off + (int64_t)r * W, W);
            }
            for (int j = 0; j < K; j++) DW[(int64_t)c * K + j] = (T)dw[j];
            DB[c] = (T)db;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MSCA's strip sum a + sum_i v_i(h_i(a)): one branch (1xK then Kx1) per kernel length in Ks.
// Branch i's parameters are params[4i .. 4i+3] = wh [C, K], bh [C], wv [C, K], bv [C]; their
// gradients go to grads[4i .. 4i+3]. saved[i] is t_i = h_i(a) [N, C, H, W].

template <typename T, int... Ks>
struct Msca;

template <typename T>
struct Msca<T> {  // no branch left
    static constexpr int taps = 0, max_pad = 0;
    struct Grad {};
    static void forward_plane(const T*, const T* const*, T* const*, T*, T*, T*, int64_t, int, int, int) {}
    static void init_grad(Grad&, const T* const*, int) {}
    static void backward_plane(Grad&, const T*, const T*, T*, const T* const*, int64_t, T*, T*, int, int) {}
    static void store_grad(const Grad&, double, T* const*, int) {}
};

template <typename T, int K, int... Ks>
struct Msca<T, K, Ks...> {
    typedef Msca<T, Ks...> Rest;
    static constexpr int P = K / 2;
    static constexpr int taps = K + Rest::taps;
    static constexpr int max_pad = P > Rest::max_pad ? P : Rest::max_pad;

    // op += v(h(a)) for plane nc (channel c) of this and the following branches; h(a) is written
    // to saved[0] (when given) or to the scratch plane t
    static void forward_plane(const T* __restrict ap, const T* const* params, T* const* saved, T* t, T* pad,
                              T* __restrict op, int64_t nc, int c, int H, int W) {
        const int64_t HW = (int64_t)H * W;
        const T* __restrict wh = params[0] + (int64_t)c * K;
        const T* __restrict wv = params[2] + (int64_t)c * K;
        T* __restrict tp = saved ? saved[0] + nc * HW : t;
        for (int r = 0; r < H; r++) {
            pad_row(pad, ap + (int64_t)r * W, W, P);
            hrow<K>(pad, wh, params[1][c], tp + (int64_t)r * W, W);
        }
        vplane<K>(tp, wv, params[3][c], op, H, W, true);
        Rest::forward_plane(ap, params + 4, saved ? saved + 1 : nullptr, t, pad, op, nc, c, H, W);
    }

    // per-channel gradient sums of the branches, and their flipped kernels
    struct Grad {
        double dwh[K], dwv[K], dbh;
        T whf[K], wvf[K];
        typename Rest::Grad rest;
    };

    static void init_grad(Grad& g, const T* const* params, int c) {
        for (int j = 0; j < K; j++) {
            g.dwh[j] = 0;
            g.dwv[j] = 0;
        }
        g.dbh = 0;
        for (int j = 0; j < K; j++) {
            g.whf[j] = params[0][(int64_t)c * K + K - 1 - j];
            g.wvf[j] = params[2][(int64_t)c * K + K - 1 - j];
        }
        Rest::init_grad(g.rest, params + 4, c);
    }

    // da += h^T v^T g of this and the following branches for the plane at off; weight and bias
    // gradient sums into g
    static void backward_plane(Grad& g, const T* __restrict ap, const T* __restrict gp, T* __restrict dap,
                               const T* const* saved, int64_t off, T* dt, T* pad, int H, int W) {
        const T* __restrict tp = saved[0] + off;      // t = h(a), saved by the forward
        vplane<K>(gp, g.wvf, T(0), dt, H, W, false);  // dt = v^T g
        vdw_plane<K>(gp, tp, g.dwv, H, W);
        for (int r = 0; r < H; r++) {
            const T* __restrict dtr = dt + (int64_t)r * W;
            pad_row(pad, dtr, W, P);
            hrow_add<K>(pad, g.whf, dap + (int64_t)r * W, W);  // da += h^T dt
            g.dbh += (double)rowsum(dtr, W);
        }
        hdw_plane<K>(dt, ap, pad, g.dwh, H, W);
        Rest::backward_plane(g.rest, ap, gp, dap, saved + 1, off, dt, pad, H, W);
    }

    // dbv: the sum of the output gradient, the bias gradient of every Kx1 conv
    static void store_grad(const Grad& g, double dbv, T* const* grads, int c) {
        for (int j = 0; j < K; j++) {
            grads[0][(int64_t)c * K + j] = (T)g.dwh[j];
            grads[2][(int64_t)c * K + j] = (T)g.dwv[j];
        }
        grads[1][c] = (T)g.dbh;
        grads[3][c] = (T)dbv;
        Rest::store_grad(g.rest, dbv, grads + 4, c);
    }
};

// O = A + sum_i v_i(h_i(A)); with saved (not null) also saved[i] = h_i(A) for the backward pass.
template <int... Ks, typename T>
static inline void msca_forward(const T* __restrict A, const T* const* params, T* const* saved,
                                T* __restrict O, int N, int C, int H, int W) {
    typedef Msca<T, Ks...> M;
    const int64_t HW = (int64_t)H * W;
#pragma omp parallel if ((int64_t)N * C * HW * M::taps > JSN_PAR_MIN)
    {
        std::vector<T> pad(W + 2 * M::max_pad);
        std::vector<T> t(saved ? 0 : HW);
#pragma omp for schedule(dynamic, 1)
        for (int64_t nc = 0; nc < (int64_t)N * C; nc++) {
            const int c = (int)(nc % C);
            const T* __restrict ap = A + nc * HW;
            T* __restrict op = O + nc * HW;
            for (int64_t q = 0; q < HW; q++) op[q] = ap[q];
            M::forward_plane(ap, params, saved, t.data(), pad.data(), op, nc, c, H, W);
        }
    }
}

// Gradients of msca_forward for the output gradient G: DA and grads (see above); parallel over
// channels, the batch looped inside.
template <int... Ks, typename T>
static inline void msca_backward(const T* __restrict A, const T* const* params, const T* const* saved,
                                 const T* __restrict G, T* __restrict DA, T* const* grads, int N, int C,
                                 int H, int W) {
    typedef Msca<T, Ks...> M;
    const int64_t HW = (int64_t)H * W;
#pragma omp parallel if ((int64_t)N * C * HW * M::taps > JSN_PAR_MIN)
    {
        std::vector<T> pad(W + 2 * M::max_pad);
        std::vector<T> dt(HW);
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < C; c++) {
            typename M::Grad g;
            M::init_grad(g, params, c);
            double dbv = 0;
            for (int n = 0; n < N; n++) {
                const int64_t off = ((int64_t)n * C + c) * HW;
                const T* __restrict ap = A + off;
                const T* __restrict gp = G + off;
                T* __restrict dap = DA + off;
                for (int64_t q = 0; q < HW; q++) dap[q] = gp[q];
                for (int r = 0; r < H; r++) dbv += (double)rowsum(gp + (int64_t)r * W, W);
                M::backward_plane(g, ap, gp, dap, saved, off, dt.data(), pad.data(), H, W);
            }
            M::store_grad(g, dbv, grads, c);
        }
    }
}

}  // namespace jsn_strip
#endif  // JSN_STRIP_CONV_H
