// The CPU depthwise kernels as a translation unit of their own, to compile and check them outside
// jsegnext (which hands depthwise_conv.h to jt.code, one kernel size per op):
//   g++ -std=c++14 -O2 -march=native -fopenmp -Wall -c depthwise_conv.cc -o depthwise_conv.o
#include "depthwise_conv.h"

namespace jsn_dw {

// Calls (never made) of the kernels SegNeXt uses (3x3, 5x5) and of a larger one (7x7: several
// weight-gradient passes), so that the compiler generates them all.
template <typename T, int K>
void compile_size(const T* in, T* out, T* dw, T* db) {
    forward<K>(in, in, in, out, 0, 0, 0, 0);
    backward<K>(in, in, in, out, dw, db, 0, 0, 0, 0);
}

template <typename T>
void compile_all(const T* in, T* out, T* dw, T* db) {
    compile_size<T, 3>(in, out, dw, db);
    compile_size<T, 5>(in, out, dw, db);
    compile_size<T, 7>(in, out, dw, db);
}

template void compile_all<float>(const float*, float*, float*, float*);
template void compile_all<double>(const double*, double*, double*, double*);

}  // namespace jsn_dw
