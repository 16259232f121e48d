// Bilinear resize (PyTorch's align_corners=False) and the cross entropy fused with it, on the CPU:
// C++ and OpenMP, float32.
//
// Both blend a + (b - a) * frac along the width, then along the height, with the source indices
// and weights of Tables (computed in jsegnext/ops/resize.py). The fused loss never holds the
// full-size logits: its forward upsamples one output row for all classes into a small buffer and
// keeps one log-sum-exp per pixel; its backward works plane by plane (no write conflicts),
// recomputes the upsampled rows, forms softmax - onehot and folds it straight back through the
// resize.
//
// resize_argmax, for inference, never holds the full-size logits either: the label map of a chain
// of resizes (composed into per-axis taps by resize.py) is the argmax over the classes of each
// output pixel, taken row by row from width-resized source rows.
//
// Entry points (jsegnext/ops/resize.py calls them through jt.code): resize_forward,
// resize_backward, ce_forward, ce_backward, resize_argmax.
#ifndef JSN_RESIZE_H
#define JSN_RESIZE_H
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "simd.h"

// below this many output values a resize runs on one thread
#define JSN_RESIZE_PAR_MIN (1 << 16)

namespace jsn_resize {

// Source rows/columns (lo, hi) and the weight of hi of every output row (y) and column (x).
struct Tables {
    const int* ylo;
    const int* yhi;
    const float* yf;
    const int* xlo;
    const int* xhi;
    const float* xf;
};

// out[x] = row[lo[x]] + (row[hi[x]] - row[lo[x]]) * f[x], x < n (row: W values). With AVX-512, 16
// outputs whose sources span fewer than 16 values (any upsampling) take one load and two permutes
// instead of 32 scalar loads.
static inline void hlerp(const float* __restrict row, int W, const int* __restrict lo, const int* __restrict hi,
                         const float* __restrict f, float* __restrict out, int n) {
    int x = 0;
#if defined(__AVX512F__)
    for (; x + 16 <= n; x += 16) {
        const int base = lo[x];
        if (hi[x + 15] - base >= 16) break;
        const int avail = std::min(16, W - base);
        const __m512 s = _mm512_maskz_loadu_ps((__mmask16)((1u << avail) - 1u), row + base);
        const __m512i b = _mm512_set1_epi32(base);
        const __m512 a = _mm512_permutexvar_ps(_mm512_sub_epi32(_mm512_loadu_si512(lo + x), b), s);
        const __m512 c = _mm512_permutexvar_ps(_mm512_sub_epi32(_mm512_loadu_si512(hi + x), b), s);
        _mm512_storeu_ps(out + x, _mm512_fmadd_ps(_mm512_sub_ps(c, a), _mm512_loadu_ps(f + x), a));
    }
#endif
    for (; x < n; x++) {
        float a = row[lo[x]];
        out[x] = a + (row[hi[x]] - a) * f[x];
    }
}

// Keeps the width-interpolated source rows r0 and r1 of one plane in ra / rb (reusing what it has).
struct RowPair {
    std::vector<float> buf;
    float* ra;
    float* rb;
    int ia = -1, ib = -1;
    explicit RowPair(int n) : buf(2 * (size_t)n) {
        ra = buf.data();
        rb = ra + n;
    }
    void load(const float* plane, int W, int r0, int r1, const int* xlo, const int* xhi, const float* xf,
              int OW) {
        if (ia != r0) {
            if (ib == r0) {
                std::swap(ra, rb);
                std::swap(ia, ib);
            } else {
                hlerp(plane + (size_t)r0 * W, W, xlo, xhi, xf, ra, OW);
                ia = r0;
            }
        }
        if (ib != r1) {
            hlerp(plane + (size_t)r1 * W, W, xlo, xhi, xf, rb, OW);
            ib = r1;
        }
    }
};

// out[x] = a[x] + (b[x] - a[x]) * f
static inline void vlerp(const float* __restrict a, const float* __restrict b, float f, float* __restrict out,
                         int n) {
#pragma omp simd
    for (int x = 0; x < n; x++) out[x] = a[x] + (b[x] - a[x]) * f;
}

// The runs of output columns with the same source columns (lo, hi): start of each run, then OW.
static inline std::vector<int> column_runs(const int* xlo, const int* xhi, int OW) {
    std::vector<int> runs{0};
    for (int x = 1; x < OW; x++)
        if (xlo[x] != xlo[x - 1] || xhi[x] != xhi[x - 1]) runs.push_back(x);
    runs.push_back(OW);
    return runs;
}

// Adjoint of the resize for one plane: acc holds, per source row, the height-folded gradient at
// output width (H x OW); fold it along the width into gx (H x W, overwritten). Each run of output
// columns (column_runs) is summed in registers and added to its two source columns once.
static inline void fold_width(const float* __restrict acc, int H, int OW, const int* xlo, const int* xhi,
                              const float* xf, const std::vector<int>& runs, float* __restrict gx, int W) {
    std::memset(gx, 0, sizeof(float) * (size_t)H * W);
    for (int r = 0; r < H; r++) {
        const float* a = acc + (size_t)r * OW;
        float* g = gx + (size_t)r * W;
        for (size_t k = 0; k + 1 < runs.size(); k++) {
            float lo_sum = 0.f, hi_sum = 0.f;
            for (int x = runs[k]; x < runs[k + 1]; x++) {
                const float v = a[x], f = xf[x];
                lo_sum += v - v * f;
                hi_sum += v * f;
            }
            g[xlo[runs[k]]] += lo_sum;
            g[xhi[runs[k]]] += hi_sum;
        }
    }
}

// acc[r0] += (1 - f) * d, acc[r1] += f * d  (rows of length n)
static inline void fold_height(const float* __restrict d, float f, float* __restrict a0, float* __restrict a1,
                               int n) {
#pragma omp simd
    for (int x = 0; x < n; x++) {
        float v = d[x];
        a0[x] += v - v * f;
    }
#pragma omp simd
    for (int x = 0; x < n; x++) a1[x] += d[x] * f;
}

// vlerp with streaming (non-temporal) stores: out vector-aligned, n a multiple of the vector length
static inline void vlerp_stream(const float* __restrict a, const float* __restrict b, float f,
                                float* __restrict out, int n) {
    constexpr int L = JSN_VB / sizeof(float);
    const jsn::Vec<float>::type fv = jsn::vset1(f);
    for (int x = 0; x < n; x += L) {
        const jsn::Vec<float>::type av = jsn::vload(a + x);
        jsn::vstream(out + x, jsn::vfma(av, jsn::vload(b + x) - av, fv));
    }
}

// outputs of at least this many bytes are written with streaming stores (they would not stay in
// the caches for the next op anyway; the final logits of SegNeXt at 512x512 are 157 MB)
#define JSN_RESIZE_STREAM_MIN (8 << 20)

// y (planes x OH x OW) = the resize of x (planes x H x W)
static inline void resize_forward(const float* x, float* y, int planes, int H, int W, int OH, int OW,
                                  const Tables& t) {
    constexpr int L = JSN_VB / sizeof(float);
    const bool stream = (long long)planes * OH * OW * 4 >= JSN_RESIZE_STREAM_MIN && OW % L == 0 &&
                        (uintptr_t)y % JSN_VB == 0;
#pragma omp parallel if ((long long)planes * OH * OW > JSN_RESIZE_PAR_MIN)
    {
#pragma omp for schedule(static)
        for (int p = 0; p < planes; p++) {
            RowPair rows(OW);
            const float* plane = x + (size_t)p * H * W;
            float* out = y + (size_t)p * OH * OW;
            for (int oy = 0; oy < OH; oy++) {
                rows.load(plane, W, t.ylo[oy], t.yhi[oy], t.xlo, t.xhi, t.xf, OW);
                if (stream)
                    vlerp_stream(rows.ra, rows.rb, t.yf[oy], out + (size_t)oy * OW, OW);
                else
                    vlerp(rows.ra, rows.rb, t.yf[oy], out + (size_t)oy * OW, OW);
            }
        }
        if (stream) jsn::stream_fence();  // every thread's streaming stores, before the barrier
    }
}

// gx (planes x H x W) = the gradient of resize_forward's x for the output gradient g (planes x OH x OW)
static inline void resize_backward(const float* g, float* gx, int planes, int H, int W, int OH, int OW,
                                   const Tables& t) {
    const std::vector<int> runs = column_runs(t.xlo, t.xhi, OW);
#pragma omp parallel for schedule(static) if ((long long)planes * OH * OW > JSN_RESIZE_PAR_MIN)
    for (int p = 0; p < planes; p++) {
        std::vector<float> acc((size_t)H * OW, 0.f);
        const float* gp = g + (size_t)p * OH * OW;
        for (int oy = 0; oy < OH; oy++)
            fold_height(gp + (size_t)oy * OW, t.yf[oy], &acc[(size_t)t.ylo[oy] * OW],
                        &acc[(size_t)t.yhi[oy] * OW], OW);
        fold_width(acc.data(), H, OW, t.xlo, t.xhi, t.xf, runs, gx + (size_t)p * H * W, W);
    }
}

// Cross entropy of the logits (N, C, H, W) resized to the label's size (N, OH, OW): row_loss (N, OH)
// the loss summed over each output row (labels outside [0, C) count zero), lse (N, OH, OW) the
// log-sum-exp of every pixel (kept for the backward pass).
static inline void ce_forward(const float* logits, const int* label, float* row_loss, float* lse, int N,
                              int C, int H, int W, int OH, int OW, const Tables& t) {
#pragma omp parallel
    {
        // per class, the width-interpolated source rows of the current output row (kept while the
        // following output rows read the same source rows: each is interpolated once per thread)
        std::vector<RowPair> rows;
        rows.reserve(C);
        for (int c = 0; c < C; c++) rows.emplace_back(OW);
        std::vector<float> buf((size_t)(C + 2) * OW);
        int image = -1;
#pragma omp for schedule(static)
        for (int row = 0; row < N * OH; row++) {
            const int n = row / OH, oy = row % OH;
            if (n != image) {  // other planes: forget the rows kept
                for (auto& r : rows) r.ia = r.ib = -1;
                image = n;
            }
            float* L = buf.data();           // C x OW upsampled logits of this row
            float* m = L + (size_t)C * OW;
            float* s = m + OW;
            const float f = t.yf[oy];
            for (int c = 0; c < C; c++) {
                const float* plane = logits + ((size_t)n * C + c) * H * W;
                rows[c].load(plane, W, t.ylo[oy], t.yhi[oy], t.xlo, t.xhi, t.xf, OW);
                vlerp(rows[c].ra, rows[c].rb, f, L + (size_t)c * OW, OW);
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
            float* lse_row = lse + (size_t)row * OW;
            double total = 0.0;
            for (int x = 0; x < OW; x++) {
                lse_row[x] = m[x] + logf(s[x]);
                const int k = lab[x];
                if (k >= 0 && k < C) total += (double)(lse_row[x] - L[(size_t)k * OW + x]);
            }
            row_loss[row] = (float)total;
        }
    }
}

// grad (N, C, H, W): the gradient of the logits for g (N, OH), the gradient of ce_forward's row_loss
static inline void ce_backward(const float* logits, const int* label, const float* lse, const float* g,
                               float* grad, int N, int C, int H, int W, int OH, int OW, const Tables& t) {
    const std::vector<int> runs = column_runs(t.xlo, t.xhi, OW);
#pragma omp parallel for schedule(static)
    for (int p = 0; p < N * C; p++) {
        const int n = p / C, c = p % C;
        const float* plane = logits + (size_t)p * H * W;
        RowPair rows(OW);
        std::vector<float> acc((size_t)H * OW, 0.f), l(OW), d(OW);
        for (int oy = 0; oy < OH; oy++) {
            const size_t row = (size_t)n * OH + oy;
            rows.load(plane, W, t.ylo[oy], t.yhi[oy], t.xlo, t.xhi, t.xf, OW);
            vlerp(rows.ra, rows.rb, t.yf[oy], l.data(), OW);
            const int* lab = label + row * OW;
            const float* lse_row = lse + row * OW;
            const float gr = g[row];
            float* dd = d.data();
            const float* ll = l.data();
#pragma omp simd
            for (int x = 0; x < OW; x++) {
                const int k = lab[x];
                const float valid = (k >= 0 && k < C) ? gr : 0.f;
                dd[x] = valid * (expf(ll[x] - lse_row[x]) - (k == c ? 1.f : 0.f));
            }
            fold_height(dd, t.yf[oy], &acc[(size_t)t.ylo[oy] * OW], &acc[(size_t)t.yhi[oy] * OW], OW);
        }
        fold_width(acc.data(), H, OW, t.xlo, t.xhi, t.xf, runs, grad + (size_t)p * H * W, W);
    }
}

// out[x] = sum_t w[t*OW + x] * src[idx[t*OW + x]], x < OW: a source row resized along the width
// with TX taps (unused taps repeat a used index with weight 0). first / last: the least / largest
// index output x reads (non-decreasing in x). With AVX-512, 16 outputs whose sources span fewer
// than 16 values (any upsampling, mild downsampling) take one load and a permute per tap instead
// of 16 scalar loads per tap.
static inline void wide_row(const float* __restrict src, int W, float* __restrict out, int OW,
                            const int* __restrict idx, const float* __restrict w, int TX,
                            const int* __restrict first, const int* __restrict last) {
    int x = 0;
#if defined(__AVX512F__)
    for (; x + 16 <= OW; x += 16) {
        const int base = first[x];
        if (last[x + 15] - base >= 16) break;
        const int avail = std::min(16, W - base);
        const __m512 s = _mm512_maskz_loadu_ps((__mmask16)((1u << avail) - 1u), src + base);
        const __m512i b = _mm512_set1_epi32(base);
        __m512 acc = _mm512_setzero_ps();
        for (int t = 0; t < TX; t++) {
            const __m512i i = _mm512_sub_epi32(_mm512_loadu_si512(idx + (size_t)t * OW + x), b);
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + (size_t)t * OW + x), _mm512_permutexvar_ps(i, s), acc);
        }
        _mm512_storeu_ps(out + x, acc);
    }
#endif
    for (; x < OW; x++) {
        float v = 0.f;
        for (int t = 0; t < TX; t++) v += w[(size_t)t * OW + x] * src[idx[(size_t)t * OW + x]];
        out[x] = v;
    }
}

// labels (N, OH, OW) = argmax over C of the logits (N, C, H, W) resized with per-axis taps: output
// row oy = sum_t yw[t*OH + oy] * width-resized source row yi[t*OH + oy] (TY taps), the width with
// TX taps (xi / xw, first and last index xf / xl; see wide_row). The first of equal maxima wins,
// as in argmax. Source rows are width-resized once per (image, class), into a buffer.
static inline void resize_argmax(const float* logits, int* labels, int N, int C, int H, int W, int OH, int OW,
                                 const int* yi, const float* yw, int TY, const int* xi, const float* xw, int TX,
                                 const int* xf, const int* xl) {
    static thread_local std::vector<float> buffer;  // of the calling thread; the workers share it
    if (buffer.size() < (size_t)N * C * H * OW) buffer.resize((size_t)N * C * H * OW);
    float* const wide = buffer.data();
    const bool par = (int64_t)N * C * OH * OW > JSN_RESIZE_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t p = 0; p < (int64_t)N * C * H; p++)
        wide_row(logits + p * W, W, wide + p * OW, OW, xi, xw, TX, xf, xl);
#pragma omp parallel if (par)
    {
        std::vector<float> best_buf(OW), value_buf(OW);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < (int64_t)N * OH; r++) {
            const int n = (int)(r / OH), oy = (int)(r % OH);
            int* __restrict lab = labels + r * OW;
            float* __restrict best = best_buf.data();
            float* __restrict v = value_buf.data();
            for (int c = 0; c < C; c++) {
                const float* plane = wide + ((size_t)n * C + c) * H * OW;
                const float* __restrict r0 = plane + (size_t)yi[oy] * OW;
                const float w0 = yw[oy];
                float* __restrict dst = c == 0 ? best : v;
#pragma omp simd
                for (int x = 0; x < OW; x++) dst[x] = w0 * r0[x];
                for (int t = 1; t < TY; t++) {
                    const float* __restrict rt = plane + (size_t)yi[t * OH + oy] * OW;
                    const float wt = yw[t * OH + oy];
#pragma omp simd
                    for (int x = 0; x < OW; x++) dst[x] += wt * rt[x];
                }
                if (c == 0) {
                    std::fill(lab, lab + OW, 0);
                    continue;
                }
#pragma omp simd
                for (int x = 0; x < OW; x++) {
                    const bool higher = v[x] > best[x];
                    best[x] = higher ? v[x] : best[x];
                    lab[x] = higher ? c : lab[x];
                }
            }
        }
    }
}

}  // namespace jsn_resize
#endif  // JSN_RESIZE_H
