// Vector helpers shared by the CPU kernels (strip_conv.h, depthwise_conv.h).
//
// With GCC/Clang, Vec<T>::type is a vector of JSN_VB bytes (64 with AVX-512, 32 with AVX, else 16)
// that loads and stores at any element-aligned address; elsewhere a plain-array stand-in that the
// compiler may still vectorise.
#ifndef JSN_SIMD_H
#define JSN_SIMD_H
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__) || defined(__AVX__) || defined(__FMA__)
#include <immintrin.h>
#endif

// below this many multiply-adds a kernel runs on one thread (the fork/join costs more)
#define JSN_PAR_MIN (1 << 17)

#if defined(__AVX512F__)
#define JSN_VB 64
#elif defined(__AVX__)
#define JSN_VB 32
#else
#define JSN_VB 16
#endif

namespace jsn {

#if defined(__GNUC__)
template <typename T>
struct Vec {
    typedef T type __attribute__((vector_size(JSN_VB), aligned(sizeof(T))));
};
template <typename T>
static inline typename Vec<T>::type vload(const T* p) {
    return *reinterpret_cast<const typename Vec<T>::type*>(p);
}
template <typename T>
static inline void vstore(T* p, typename Vec<T>::type v) {
    *reinterpret_cast<typename Vec<T>::type*>(p) = v;
}
template <typename T>
static inline typename Vec<T>::type vset1(T s) {
    return typename Vec<T>::type{} + s;
}
// acc + a * b as one fused multiply-add. Through the intrinsics where there are any, so that
// -Ofast's re-association cannot turn a chain of FMAs into separate multiplies and adds.
#if JSN_VB == 64 && defined(__AVX512F__)
static inline Vec<float>::type vfma(Vec<float>::type acc, Vec<float>::type a, Vec<float>::type b) {
    return (Vec<float>::type)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)acc);
}
static inline Vec<double>::type vfma(Vec<double>::type acc, Vec<double>::type a, Vec<double>::type b) {
    return (Vec<double>::type)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)acc);
}
#elif JSN_VB == 32 && defined(__FMA__)
static inline Vec<float>::type vfma(Vec<float>::type acc, Vec<float>::type a, Vec<float>::type b) {
    return (Vec<float>::type)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)acc);
}
static inline Vec<double>::type vfma(Vec<double>::type acc, Vec<double>::type a, Vec<double>::type b) {
    return (Vec<double>::type)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)acc);
}
#else
template <typename V>
static inline V vfma(V acc, V a, V b) {
    return acc + a * b;
}
#endif
// Non-temporal (streaming) store of a whole vector to a vector-aligned address: large outputs
// skip the read-for-ownership and do not evict the inputs from the caches.
#if JSN_VB == 64 && defined(__AVX512F__)
static inline void vstream(float* p, Vec<float>::type v) { _mm512_stream_ps(p, (__m512)v); }
static inline void vstream(double* p, Vec<double>::type v) { _mm512_stream_pd(p, (__m512d)v); }
static inline void stream_fence() { _mm_sfence(); }
#elif JSN_VB == 32 && defined(__AVX__)
static inline void vstream(float* p, Vec<float>::type v) { _mm256_stream_ps(p, (__m256)v); }
static inline void vstream(double* p, Vec<double>::type v) { _mm256_stream_pd(p, (__m256d)v); }
static inline void stream_fence() { _mm_sfence(); }
#else
template <typename T, typename V>
static inline void vstream(T* p, V v) {
    vstore(p, v);
}
static inline void stream_fence() {}
#endif
// Keep a loaded vector in a register: stops GCC from folding the same (unaligned, often cache-line
// splitting) load into every FMA that uses it, which would undo the load reuse of the row blocks.
#if defined(__x86_64__) || defined(__i386__)
#define JSN_KEEP(v) __asm__("" : "+v"(v))
#else
#define JSN_KEEP(v) ((void)0)
#endif
// sum of the lanes, first to last
template <typename T>
static inline T vsum(typename Vec<T>::type v) {
    T s = T(0);
    for (int t = 0; t < (int)(JSN_VB / sizeof(T)); t++) s += v[t];
    return s;
}
#else
#define JSN_KEEP(v) ((void)0)
// portable stand-in (plain arrays; the compiler may still vectorise the element loops)
template <typename T>
struct VecS {
    T v[JSN_VB / sizeof(T)];
    VecS& operator+=(const VecS& o) {
        for (int t = 0; t < (int)(JSN_VB / sizeof(T)); t++) v[t] += o.v[t];
        return *this;
    }
};
template <typename T>
struct Vec {
    typedef VecS<T> type;
};
template <typename T>
static inline VecS<T> operator*(T s, const VecS<T>& a) {
    VecS<T> r;
    for (int t = 0; t < (int)(JSN_VB / sizeof(T)); t++) r.v[t] = s * a.v[t];
    return r;
}
template <typename T>
static inline VecS<T> operator*(const VecS<T>& a, const VecS<T>& b) {
    VecS<T> r;
    for (int t = 0; t < (int)(JSN_VB / sizeof(T)); t++) r.v[t] = a.v[t] * b.v[t];
    return r;
}
template <typename T>
static inline VecS<T> vload(const T* p) {
    VecS<T> r;
    std::memcpy(r.v, p, JSN_VB);
    return r;
}
template <typename T>
static inline void vstore(T* p, const VecS<T>& v) {
    std::memcpy(p, v.v, JSN_VB);
}
template <typename T>
static inline VecS<T> vset1(T s) {
    VecS<T> r;
    for (int t = 0; t < (int)(JSN_VB / sizeof(T)); t++) r.v[t] = s;
    return r;
}
template <typename T>
static inline void vstream(T* p, const VecS<T>& v) {
    vstore(p, v);
}
static inline void stream_fence() {}
template <typename T>
static inline VecS<T> vfma(VecS<T> acc, const VecS<T>& a, const VecS<T>& b) {
    acc += a * b;
    return acc;
}
template <typename T>
static inline T vsum(const VecS<T>& a) {
    T s = T(0);
    for (int t = 0; t < (int)(JSN_VB / sizeof(T)); t++) s += a.v[t];
    return s;
}
#endif

}  // namespace jsn
#endif  // JSN_SIMD_H
