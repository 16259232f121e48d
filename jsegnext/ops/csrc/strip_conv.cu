// The CUDA strip kernels as a translation unit of their own, to compile and check them outside
// jsegnext (which hands strip_conv.cuh to jt.code, one kernel length per op):
//   nvcc -std=c++14 -arch=sm_80 -c strip_conv.cu -o strip_conv.o   (and -arch=sm_90)
#include "strip_conv.cuh"

namespace jsn_strip_cuda {

// Calls (never made) of every kernel SegNeXt uses, so that the compiler generates them all.
template <typename T, int K>
void compile_strip(const T* in, T* out, typename Acc<T>::type* acc) {
    forward<K, false>(in, in, in, out, 0, 0, 0, 0);
    forward<K, true>(in, in, in, out, 0, 0, 0, 0);
    backward<K, false>(in, in, in, out, acc, acc, 0, 0, 0, 0);
    backward<K, true>(in, in, in, out, acc, acc, 0, 0, 0, 0);
}

template <typename T>
void compile_all(const T* in, T* out, typename Acc<T>::type* acc) {
    compile_strip<T, 7>(in, out, acc);
    compile_strip<T, 11>(in, out, acc);
    compile_strip<T, 21>(in, out, acc);
}

template void compile_all<__half>(const __half*, __half*, float*);
template void compile_all<float>(const float*, float*, float*);
template void compile_all<double>(const double*, double*, double*);

}  // namespace jsn_strip_cuda
