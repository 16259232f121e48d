// Kernels of the fused inference SegNeXt (jsegnext/models/fuse.py), and of the 1x1 convolutions of
// training, on the CPU: C++ and OpenMP, float32, NCHW. The matrix products go to oneDNN's sgemm (the library Jittor's own
// CPU matmul uses, already loaded in the process; found with dlsym, so nothing is linked), called
// on blocks small enough to stay in the cache while the element-wise work around them is done:
//
// - pointwise<ACT, MUL, RES>: a 1x1 convolution y = act(W x + b) [* m] [+ alpha * r], per block of
//   pixels; the bias, activation, product and residual are applied while the block is in cache.
// - pointwise_backward: the gradients of a plain 1x1 convolution (training uses pointwise<0, ...>
//   and this for every Conv1x1: no per-image stacking, no transposed copies).
// - pointwise2<RES>: two 1x1 convolutions in a row with MSCA's gate between them,
//   y = W2 ((W1 x + b1) * m) + b2 [+ alpha * r] (conv3, "* u", proj_2 and the block's residual);
//   the intermediate block never leaves the cache.
// - mlp: SegNeXt's whole Mlp branch with its residual, y = x + W2 gelu(dw3x3(W1 x + b1)) + b2,
//   streaming over image rows: a ring of fc1 rows (the 3x3 needs one row above and below) and one
//   block of activations are all that exist of the hidden layer (8x wider than x in stages 1-2).
// - group_norm<RES, RELU>, channel_norm: GroupNorm (+ residual, ReLU) and LayerNorm over channels,
//   centred two-pass statistics as jsegnext/models/layers.py computes them.
// - nmf: NMF2D's eval-mode decomposition (softmax init, multiplicative updates, reconstruction) of
//   each (D, N) matrix, with the products in sgemm (transposes folded into the calls).
//
// Entry points (jsegnext/ops/pointwise.py calls them through jt.code): pointwise, pointwise_backward,
// pointwise2, mlp, group_norm, channel_norm, nmf.
#ifndef JSN_POINTWISE_H
#define JSN_POINTWISE_H
#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "gelu.h"

namespace jsn_pw {

// oneDNN's row-major sgemm: C = alpha op(A) op(B) + beta C
typedef int (*SgemmFn)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                       int64_t, float, float*, int64_t);

static inline SgemmFn onednn_sgemm() {
    static const SgemmFn fn = (SgemmFn)dlsym(RTLD_DEFAULT, "dnnl_sgemm");
    return fn;
}

// C (M x N, ldc) = op(A) op(B) + beta C, row-major; op(A) is M x K, op(B) K x N. Called inside a
// parallel region it runs on the calling thread (oneDNN does not nest); outside, on all threads.
static inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                        const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (SgemmFn fn = onednn_sgemm()) {
        fn(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, 1.f, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    // portable fallback (oneDNN not loaded): plain loops, vectorised over the columns of C
    for (int64_t i = 0; i < M; i++) {
        float* __restrict c = C + i * ldc;
        if (beta == 0.f)
            std::memset(c, 0, sizeof(float) * N);
        else if (beta != 1.f)
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
        for (int64_t k = 0; k < K; k++) {
            const float a = ta ? A[k * lda + i] : A[i * lda + k];
            if (!tb) {
                const float* __restrict b = B + k * ldb;
#pragma omp simd
                for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
            } else {
                for (int64_t j = 0; j < N; j++) c[j] += a * B[j * ldb + k];
            }
        }
    }
}

using jsn::gelu;

// A per-thread buffer of at least n floats (64-byte aligned, contents undefined) that lives on
// between calls: allocating (and page-faulting) megabytes on every call cost as much as the work.
template <int SLOT>
static inline float* scratch(size_t n) {
    static thread_local std::unique_ptr<float[]> mem;
    static thread_local size_t size = 0;
    if (size < n + 16) {
        size = n + 16;
        mem.reset(new float[size]);
    }
    return reinterpret_cast<float*>(((uintptr_t)mem.get() + 63) & ~(uintptr_t)63);
}

// y[i] = act(y[i] + b); ACT 0: none, 1: GELU (erf), 2: ReLU
template <int ACT>
static inline void bias_act(float* __restrict y, float b, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float v = y[i] + b;
        if (ACT == 1) v = gelu(v);
        if (ACT == 2) v = v > 0.f ? v : 0.f;
        y[i] = v;
    }
}

// pixels per block of a 1x1 conv with `rows` output channels: about 64K floats of output, a
// multiple of 16, at least 64 (all of HW if smaller), and small enough to give every thread work
static inline int64_t block_pixels(int64_t HW, int64_t rows, int64_t N, int threads) {
    int64_t p = std::max<int64_t>(64, (65536 / std::max<int64_t>(rows, 1)) / 16 * 16);
    const int64_t per_image = (threads + N - 1) / N;  // blocks per image that keep all threads busy
    if (per_image > 1) p = std::min(p, std::max<int64_t>(64, ((HW + per_image - 1) / per_image + 15) / 16 * 16));
    return std::min(p, HW);
}

// y = act(W x + b) [* m] [+ (alpha ? alpha[c] : 1) * r]
//   x (N, Ci, HW); w (Co, Ci); b (Co); m, r, y (N, Co, HW); alpha (Co) or null
template <int ACT, bool MUL, bool RES>
static void pointwise(const float* x, const float* w, const float* b, const float* m, const float* r,
                      const float* alpha, float* y, int64_t N, int64_t Ci, int64_t H, int64_t W, int64_t Co) {
    const int64_t HW = H * W;
    const int64_t P = block_pixels(HW, Co, N, omp_get_max_threads());
    const int64_t per = (HW + P - 1) / P;
#pragma omp parallel for schedule(static) if (N * per > 1 && N * HW * Ci * Co > (1 << 20))
    for (int64_t t = 0; t < N * per; t++) {
        const int64_t n = t / per, p0 = (t % per) * P, np = std::min(P, HW - p0);
        float* yb = y + n * Co * HW + p0;
        gemm(false, false, Co, np, Ci, w, Ci, x + n * Ci * HW + p0, HW, 0.f, yb, HW);
        for (int64_t c = 0; c < Co; c++) {
            float* __restrict yr = yb + c * HW;
            bias_act<ACT>(yr, b[c], np);
            const int64_t off = (n * Co + c) * HW + p0;
            if (MUL) {
                const float* __restrict mr = m + off;
#pragma omp simd
                for (int64_t i = 0; i < np; i++) yr[i] *= mr[i];
            }
            if (RES) {
                const float* __restrict rr = r + off;
                const float a = alpha ? alpha[c] : 1.f;
#pragma omp simd
                for (int64_t i = 0; i < np; i++) yr[i] += a * rr[i];
            }
        }
    }
}

// Gradients of y = W x + b (a 1x1 convolution, pointwise<0, false, false>) for the output gradient g:
//   dx (N, Ci, HW) = W^T g, dw (Co, Ci) = sum_n g[n] x[n]^T, db (Co) = sum of g over n and pixels.
// dx in pixel blocks on every thread; dw as one product per image (sgemm on all threads,
// transposes folded into the call); db per channel, summed in double.
static void pointwise_backward(const float* x, const float* w, const float* g, float* dx, float* dw, float* db,
                               int64_t N, int64_t Ci, int64_t H, int64_t W, int64_t Co) {
    const int64_t HW = H * W;
    const int64_t P = block_pixels(HW, Ci, N, omp_get_max_threads());
    const int64_t per = (HW + P - 1) / P;
#pragma omp parallel for schedule(static) if (N * per > 1 && N * HW * Ci * Co > (1 << 20))
    for (int64_t t = 0; t < N * per; t++) {
        const int64_t n = t / per, p0 = (t % per) * P, np = std::min(P, HW - p0);
        gemm(true, false, Ci, np, Co, w, Ci, g + n * Co * HW + p0, HW, 0.f, dx + n * Ci * HW + p0, HW);
    }
    for (int64_t n = 0; n < N; n++)
        gemm(false, true, Co, Ci, HW, g + n * Co * HW, HW, x + n * Ci * HW, HW, n ? 1.f : 0.f, dw, Ci);
#pragma omp parallel for schedule(static) if (N * Co * HW > (1 << 16))
    for (int64_t c = 0; c < Co; c++) {
        double total = 0;
        for (int64_t n = 0; n < N; n++) {
            const float* __restrict gr = g + (n * Co + c) * HW;
            float part = 0.f;
#pragma omp simd reduction(+ : part)
            for (int64_t i = 0; i < HW; i++) part += gr[i];
            total += part;
        }
        db[c] = (float)total;
    }
}

// y = W2 ((W1 x + b1) * m) + b2 [+ alpha * r]; w1 (C1, Ci), w2 (Co, C1); m (N, C1, HW)
template <bool RES>
static void pointwise2(const float* x, const float* w1, const float* b1, const float* m, const float* w2,
                       const float* b2, const float* r, const float* alpha, float* y, int64_t N, int64_t Ci,
                       int64_t H, int64_t W, int64_t C1, int64_t Co) {
    const int64_t HW = H * W;
    const int64_t P = block_pixels(HW, std::max(C1, Co), N, omp_get_max_threads());
    const int64_t per = (HW + P - 1) / P;
#pragma omp parallel if (N * per > 1 && N * HW * (Ci * C1 + C1 * Co) > (1 << 20))
    {
        float* const v = scratch<0>((size_t)(C1 * P));
#pragma omp for schedule(static)
        for (int64_t t = 0; t < N * per; t++) {
            const int64_t n = t / per, p0 = (t % per) * P, np = std::min(P, HW - p0);
            gemm(false, false, C1, np, Ci, w1, Ci, x + n * Ci * HW + p0, HW, 0.f, v, P);
            for (int64_t c = 0; c < C1; c++) {
                float* __restrict vr = v + c * P;
                const float* __restrict mr = m + (n * C1 + c) * HW + p0;
                const float bc = b1[c];
#pragma omp simd
                for (int64_t i = 0; i < np; i++) vr[i] = (vr[i] + bc) * mr[i];
            }
            float* yb = y + n * Co * HW + p0;
            for (int64_t c = 0; c < Co; c++) {  // y starts as b2 [+ alpha r]; the product adds on
                float* __restrict yr = yb + c * HW;
                const float bc = b2[c];
                if (RES) {
                    const float* __restrict rr = r + (n * Co + c) * HW + p0;
                    const float a = alpha ? alpha[c] : 1.f;
#pragma omp simd
                    for (int64_t i = 0; i < np; i++) yr[i] = bc + a * rr[i];
                } else {
                    for (int64_t i = 0; i < np; i++) yr[i] = bc;
                }
            }
            gemm(false, false, Co, np, C1, w2, C1, v, P, 1.f, yb, HW);
        }
    }
}

// rows per step of the Mlp: about 256 pixels of each hidden channel per block, and no more than a
// band's share of the image
static inline int mlp_rows(int64_t H, int64_t W, int64_t bands) {
    const int64_t per_band = (H + bands - 1) / bands;
    return (int)std::max<int64_t>(1, std::min<int64_t>(per_band, 256 / std::max<int64_t>(W, 1)));
}

// GELU of the 3x3 depthwise conv of r rows of one channel: rows -1 .. r of the channel's ring
// (row j at ring + j * W; rows outside the image hold zeros) give out[j * W + i] for rows 0 .. r-1.
// One flat vector loop over all r * W outputs, then the first and last column of every row (which
// that loop takes from the neighbouring row instead of the zero padding) again, then the GELU.
// ring[-1] and ring[(r + 2) * W] must be readable (their values are not used).
static inline void dw3_gelu_rows(const float* __restrict ring, const float* __restrict k, float bias,
                                 float* __restrict out, int64_t r, int64_t W) {
    const float k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5], k6 = k[6], k7 = k[7],
                k8 = k[8];
    const int64_t n = r * W;
    const float* __restrict s = ring + W - 1;  // centre row, one column to the left
#pragma omp simd
    for (int64_t q = 0; q < n; q++) {
        float v = bias + k0 * s[q - W] + k1 * s[q - W + 1] + k2 * s[q - W + 2];
        v += k3 * s[q] + k4 * s[q + 1] + k5 * s[q + 2];
        v += k6 * s[q + W] + k7 * s[q + W + 1] + k8 * s[q + W + 2];
        out[q] = v;
    }
    for (int64_t j = 0; j < r; j++) {
        const float* a = ring + j * W;  // row above
        const float* b = a + W;
        const float* c = b + W;
        const int64_t e = W - 1;
        if (W == 1) {
            out[j] = bias + k1 * a[0] + k4 * b[0] + k7 * c[0];
            continue;
        }
        out[j * W] = bias + k1 * a[0] + k2 * a[1] + k4 * b[0] + k5 * b[1] + k7 * c[0] + k8 * c[1];
        out[j * W + e] = bias + k0 * a[e - 1] + k1 * a[e] + k3 * b[e - 1] + k4 * b[e] + k6 * c[e - 1] + k7 * c[e];
    }
#pragma omp simd
    for (int64_t q = 0; q < n; q++) out[q] = gelu(out[q]);
}

// y = x + W2 gelu(dw3x3(W1 x + b1) + bd) + b2
//   x, y (N, C, H, W); w1 (Hd, C); b1, bd (Hd); wd (Hd, 9); w2 (C, Hd); b2 (C)
// Each thread takes a band of rows of one image and walks down it R rows at a time, keeping the
// fc1 output of rows y-1 .. y+R in a ring (hidden x (R+2) x W) and the activations of the R rows in
// a block (hidden x R x W); zero rows stand for the 3x3's padding above and below the image.
// bands: row bands per image (0: enough for every thread).
static void mlp(const float* x, const float* w1, const float* b1, const float* wd, const float* bd,
                const float* w2, const float* b2, float* y, int64_t N, int64_t C, int64_t H, int64_t W,
                int64_t Hd, int64_t bands = 0) {
    const int64_t HW = H * W;
    const int threads = omp_get_max_threads();
    if (bands <= 0) bands = (threads + N - 1) / N;
    bands = std::max<int64_t>(1, std::min(bands, H));
    const int R = mlp_rows(H, W, bands);
#pragma omp parallel if (N * bands > 1)
    {
        const int64_t ring_ld = (int64_t)(R + 2) * W, act_ld = (int64_t)R * W;
        // the ring with a vector's worth of slack before and after (dw3_gelu_rows reads one beyond)
        float* const ring = scratch<0>((size_t)(Hd * ring_ld + 32)) + 16;
        float* const act = scratch<1>((size_t)(Hd * act_ld));
#pragma omp for schedule(static)
        for (int64_t task = 0; task < N * bands; task++) {
            const int64_t n = task / bands, band = task % bands;
            const int64_t y0 = H * band / bands, y1 = H * (band + 1) / bands;
            const float* xn = x + n * C * HW;
            float* yn = y + n * C * HW;
            // fc1 of image rows [first, last] into ring rows starting at slot
            auto fc1_rows = [&](int64_t first, int64_t last, int slot) {
                if (last < first) return;
                float* dst = ring + (int64_t)slot * W;
                const int64_t cols = (last - first + 1) * W;
                gemm(false, false, Hd, cols, C, w1, C, xn + first * W, HW, 0.f, dst, ring_ld);
                for (int64_t h = 0; h < Hd; h++) bias_act<0>(dst + h * ring_ld, b1[h], cols);
            };
            for (int64_t yb = y0; yb < y1; yb += R) {
                const int64_t r = std::min<int64_t>(R, y1 - yb);
                // slot j of the ring holds image row yb - 1 + j
                if (yb == y0) {
                    fc1_rows(std::max<int64_t>(yb - 1, 0), std::min(yb + r, H - 1), yb == 0 ? 1 : 0);
                } else {  // rows yb-1, yb are in slots R, R+1 of the last step: move them to 0, 1
                    for (int64_t h = 0; h < Hd; h++)
                        std::memmove(ring + h * ring_ld, ring + h * ring_ld + (int64_t)R * W, sizeof(float) * 2 * W);
                    fc1_rows(yb + 1, std::min(yb + r, H - 1), 2);
                }
                // the 3x3's zero padding above and below the image
                for (int64_t h = 0; h < Hd; h++) {
                    if (yb == 0) std::memset(ring + h * ring_ld, 0, sizeof(float) * W);
                    if (yb + r == H) std::memset(ring + h * ring_ld + (r + 1) * W, 0, sizeof(float) * W);
                }
                for (int64_t h = 0; h < Hd; h++)
                    dw3_gelu_rows(ring + h * ring_ld, wd + 9 * h, bd[h], act + h * act_ld, r, W);
                const int64_t cols = r * W;
                for (int64_t c = 0; c < C; c++) {  // y starts as x + b2; fc2 adds on
                    const float* __restrict xr = xn + c * HW + yb * W;
                    float* __restrict yr = yn + c * HW + yb * W;
                    const float bc = b2[c];
#pragma omp simd
                    for (int64_t i = 0; i < cols; i++) yr[i] = xr[i] + bc;
                }
                gemm(false, false, C, cols, Hd, w2, Hd, act, act_ld, 1.f, yn + yb * W, HW);
            }
        }
    }
}

// y = act(GN(x) gamma + beta [+ r]) with G groups over (N, C, HW); statistics in double
template <bool RES, bool RELU>
static void group_norm(const float* x, const float* gamma, const float* beta, const float* r, float* y,
                       int64_t N, int64_t C, int64_t HW, int64_t G, float eps) {
    const int64_t cg = C / G, len = cg * HW;
#pragma omp parallel for schedule(static) if (N * C * HW > (1 << 16))
    for (int64_t t = 0; t < N * G; t++) {
        const float* __restrict xg = x + t * len;
        double s = 0;
        for (int64_t i = 0; i < len; i++) s += xg[i];
        const float mean = (float)(s / len);
        double q = 0;
        for (int64_t i = 0; i < len; i++) {
            const float d = xg[i] - mean;
            q += (double)d * d;
        }
        const float inv = 1.f / std::sqrt((float)(q / len) + eps);
        for (int64_t cc = 0; cc < cg; cc++) {
            const int64_t c = (t % G) * cg + cc;
            const float a = gamma[c] * inv, bb = beta[c] - mean * a;
            const float* __restrict xr = xg + cc * HW;
            const float* __restrict rr = RES ? r + t * len + cc * HW : nullptr;
            float* __restrict yr = y + t * len + cc * HW;
#pragma omp simd
            for (int64_t i = 0; i < HW; i++) {
                float v = xr[i] * a + bb;
                if (RES) v += rr[i];
                if (RELU) v = v > 0.f ? v : 0.f;
                yr[i] = v;
            }
        }
    }
}

// LayerNorm over the channels of (N, C, HW): per pixel, blocks of pixels at a time
static void channel_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t N, int64_t C,
                         int64_t HW, float eps) {
    const int64_t P = 256, per = (HW + P - 1) / P;
#pragma omp parallel if (N * C * HW > (1 << 16))
    {
        std::vector<float> mean(P), inv(P);
#pragma omp for schedule(static)
        for (int64_t t = 0; t < N * per; t++) {
            const int64_t n = t / per, p0 = (t % per) * P, np = std::min(P, HW - p0);
            const float* xb = x + n * C * HW + p0;
            float* yb = y + n * C * HW + p0;
            float* __restrict m = mean.data();
            float* __restrict v = inv.data();
            std::fill(m, m + np, 0.f);
            std::fill(v, v + np, 0.f);
            for (int64_t c = 0; c < C; c++) {
                const float* __restrict xr = xb + c * HW;
#pragma omp simd
                for (int64_t i = 0; i < np; i++) m[i] += xr[i];
            }
            for (int64_t i = 0; i < np; i++) m[i] /= (float)C;
            for (int64_t c = 0; c < C; c++) {
                const float* __restrict xr = xb + c * HW;
#pragma omp simd
                for (int64_t i = 0; i < np; i++) {
                    const float d = xr[i] - m[i];
                    v[i] += d * d;
                }
            }
            for (int64_t i = 0; i < np; i++) v[i] = 1.f / std::sqrt(v[i] / (float)C + eps);
            for (int64_t c = 0; c < C; c++) {
                const float* __restrict xr = xb + c * HW;
                float* __restrict yr = yb + c * HW;
                const float g = gamma[c], bb = beta[c];
#pragma omp simd
                for (int64_t i = 0; i < np; i++) yr[i] = (xr[i] - m[i]) * v[i] * g + bb;
            }
        }
    }
}

// a = a * num / (den + 1e-6), n values
static inline void mult_update(float* __restrict a, const float* __restrict num, const float* __restrict den,
                               int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 15))
    for (int64_t i = 0; i < n; i++) a[i] = a[i] * num[i] / (den[i] + 1e-6f);
}

// NMF2D in eval mode for M matrices x (M, D, Nn) and initial bases (M, D, R); out (M, D, Nn) =
// bases coef^T after `steps` multiplicative updates of coef (Nn, R) and bases and a last coef update.
static void nmf(const float* x, const float* bases0, float* out, int64_t M, int64_t D, int64_t Nn, int64_t R,
                int steps, float inv_t) {
    // bases and coefficients, the numerators and denominators of their updates, an R x R product
    float* const B = scratch<0>((size_t)(3 * Nn * R + 3 * D * R + R * R + 64));
    float* const coef = B + D * R + 16;
    float* const num = coef + Nn * R + 16;
    float* const den = num + Nn * R;
    float* const numb = den + Nn * R;
    float* const denb = numb + D * R;
    float* const rr = denb + D * R;
    for (int64_t m = 0; m < M; m++) {
        const float* xm = x + m * D * Nn;
        std::memcpy(B, bases0 + m * D * R, sizeof(float) * D * R);
        // coef = softmax(inv_t x^T B) over R
        gemm(true, false, Nn, R, D, xm, Nn, B, R, 0.f, coef, R);
#pragma omp parallel for schedule(static) if (Nn * R > (1 << 15))
        for (int64_t i = 0; i < Nn; i++) {
            float* c = coef + i * R;
            float mx = -INFINITY;
            for (int64_t k = 0; k < R; k++) mx = std::max(mx, inv_t * c[k]);
            float s = 0.f;
            for (int64_t k = 0; k < R; k++) s += (c[k] = std::exp(inv_t * c[k] - mx));
            for (int64_t k = 0; k < R; k++) c[k] /= s;
        }
        auto update_coef = [&]() {
            gemm(true, false, Nn, R, D, xm, Nn, B, R, 0.f, num, R);       // x^T B
            gemm(true, false, R, R, D, B, R, B, R, 0.f, rr, R);    // B^T B
            gemm(false, false, Nn, R, R, coef, R, rr, R, 0.f, den, R);
            mult_update(coef, num, den, Nn * R);
        };
        for (int s = 0; s < steps; s++) {
            update_coef();
            gemm(false, false, D, R, Nn, xm, Nn, coef, R, 0.f, numb, R);            // x coef
            gemm(true, false, R, R, Nn, coef, R, coef, R, 0.f, rr, R);       // coef^T coef
            gemm(false, false, D, R, R, B, R, rr, R, 0.f, denb, R);
            mult_update(B, numb, denb, D * R);
        }
        update_coef();
        gemm(false, true, D, Nn, R, B, R, coef, R, 0.f, out + m * D * Nn, Nn);  // B coef^T
    }
}

}  // namespace jsn_pw
#endif  // JSN_POINTWISE_H
