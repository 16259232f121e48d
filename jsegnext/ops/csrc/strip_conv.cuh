// Depthwise strip convolutions (1xK along W, Kx1 along H) on CUDA, float16/32/64.
//
// UNTESTED: written and compiled (nvcc, sm_80 and sm_90) without a GPU; jsegnext runs these only
// when asked to explicitly (see jsegnext/ops/dispatch.py) until a GPU run passes the op tests.
//
// One block per row tile (1xK) or column tile (Kx1) with the data and its halo staged in shared
// memory; the weight and bias gradients are reduced per block (registers, warp shuffles, shared
// memory), then added with one atomicAdd per tap and block. float16 accumulates in float.
//
// Host entry points (jsegnext/ops/strip_conv.py calls them through jt.code): forward<K, V>,
// backward<K, V>; V: the Kx1 strip.
#ifndef JSN_STRIP_CONV_CUH
#define JSN_STRIP_CONV_CUH
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>

namespace jsn_strip_cuda {

// accumulator type of each data type
template <typename T>
struct Acc {
    typedef float type;
};
template <>
struct Acc<double> {
    typedef double type;
};

template <typename To, typename From>
__device__ __forceinline__ To cvt(From v) {
    return static_cast<To>(v);
}
template <>
__device__ __forceinline__ float cvt<float, __half>(__half v) {
    return __half2float(v);
}
template <>
__device__ __forceinline__ __half cvt<__half, float>(float v) {
    return __float2half(v);
}
template <>
__device__ __forceinline__ double cvt<double, __half>(__half v) {
    return (double)__half2float(v);
}

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
    for (int j = threadIdx.x; j < K; j += tw) sw[j] = cvt<A>(w[(int64_t)c * K + (flip ? K - 1 - j : j)]);
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
    for (int j = tid; j < K; j += 32 * blockDim.y) sw[j] = cvt<A>(w[(int64_t)c * K + (flip ? K - 1 - j : j)]);
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
__global__ void dwdb(const T* __restrict__ x, const T* __restrict__ g, A* __restrict__ dw, A* __restrict__ db,
                     int N, int C, int H, int W, int vertical) {
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
        if (j < K)
            atomicAdd(dw + (int64_t)c * K + j, s);
        else
            atomicAdd(db + c, s);
    }
}

// ---------------------------------------------------------------------------------------------
// host entry points (the default stream)

// y = b + (x correlated with w [C, K] along W, or along H with V); b may be null; flip: the
// reversed taps (the input gradient).
template <int K, bool V, typename T>
void conv(const T* x, const T* w, const T* b, T* y, int N, int C, int H, int W, int flip) {
    typedef typename Acc<T>::type A;
    if (!V) {
        const int tw = W >= 256 ? 256 : ((W + 31) / 32) * 32;
        const int ntiles = (W + tw - 1) / tw;
        const int64_t nblocks = (int64_t)N * C * H * ntiles;
        const size_t shm = (size_t)(tw + 2 * K - 1) * sizeof(A);
        hconv<K, T, A><<<(unsigned)nblocks, tw, shm>>>(x, w, b, y, C, H, W, ntiles, flip);
    } else {
        const int nrt = (H + 63) / 64, nct = (W + 31) / 32;
        const int64_t nblocks = (int64_t)N * C * nrt * nct;
        vconv<K, T, A, 64><<<(unsigned)nblocks, dim3(32, 8)>>>(x, w, b, y, C, H, W, nrt, nct, flip);
    }
}

template <int K, bool V, typename T>
void forward(const T* x, const T* w, const T* b, T* y, int N, int C, int H, int W) {
    conv<K, V>(x, w, b, y, N, C, H, W, 0);
}

// Gradients of forward<K, V> for the output gradient g: dx, and dw [C, K], db [C] in the
// accumulator type A.
template <int K, bool V, typename T, typename A>
void backward(const T* x, const T* w, const T* g, T* dx, A* dw, A* db, int N, int C, int H, int W) {
    conv<K, V>(g, w, (const T*)nullptr, dx, N, C, H, W, 1);
    cudaMemsetAsync(dw, 0, (size_t)C * K * sizeof(A), 0);
    cudaMemsetAsync(db, 0, (size_t)C * sizeof(A), 0);
    const int64_t rows = (int64_t)N * H;
    int64_t slices = (1024 + C - 1) / C;
    if (slices > rows) slices = rows;
    if (slices < 1) slices = 1;
    dwdb<K, T, A><<<dim3(C, (unsigned)slices), 256>>>(x, g, dw, db, N, C, H, W, V ? 1 : 0);
}

}  // namespace jsn_strip_cuda
#endif  // JSN_STRIP_CONV_CUH
