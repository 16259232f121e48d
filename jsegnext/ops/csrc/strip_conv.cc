// The CPU strip kernels as a translation unit of their own, to compile and check them outside
// jsegnext (which hands strip_conv.h to jt.code, one kernel length per op):
//   g++ -std=c++14 -O2 -march=native -fopenmp -Wall -c strip_conv.cc -o strip_conv.o
#include "strip_conv.h"

namespace jsn_strip {

// Calls (never made) of every kernel SegNeXt uses, so that the compiler generates them all.
template <typename T, int K>
void compile_strip(const T* in, T* out, T* dw, T* db) {
    forward<K, false>(in, in, in, out, 0, 0, 0, 0);
    forward<K, true>(in, in, in, out, 0, 0, 0, 0);
    backward<K, false>(in, in, in, out, dw, db, 0, 0, 0, 0);
    backward<K, true>(in, in, in, out, dw, db, 0, 0, 0, 0);
}

template <typename T>
void compile_all(const T* in, T* out, T* dw, T* db, const T* const* ins, T* const* outs) {
    compile_strip<T, 7>(in, out, dw, db);
    compile_strip<T, 11>(in, out, dw, db);
    compile_strip<T, 21>(in, out, dw, db);
    msca_forward<7, 11, 21>(in, ins, outs, out, 0, 0, 0, 0);
    msca_backward<7, 11, 21>(in, ins, ins, in, out, outs, 0, 0, 0, 0);
}

template void compile_all<float>(const float*, float*, float*, float*, const float* const*, float* const*);
template void compile_all<double>(const double*, double*, double*, double*, const double* const*,
                                  double* const*);

}  // namespace jsn_strip
