// The CPU resize and fused-loss kernels as a translation unit of their own, to compile and check
// them outside jsegnext (which hands resize.h to jt.code):
//   g++ -std=c++14 -O2 -march=native -fopenmp -Wall -c resize.cc -o resize.o
#include "resize.h"

namespace jsn_resize {

// Calls (never made) of every kernel, so that the compiler generates them all.
void compile_all(const float* in, const int* label, float* out, float* lse, const Tables& t) {
    resize_forward(in, out, 0, 0, 0, 0, 0, t);
    resize_backward(in, out, 0, 0, 0, 0, 0, t);
    ce_forward(in, label, out, lse, 0, 0, 0, 0, 0, 0, t);
    ce_backward(in, label, in, in, out, 0, 0, 0, 0, 0, 0, t);
    resize_argmax(in, nullptr, 0, 0, 0, 0, 0, 0, label, in, 0, label, in, 0, label, label);
}

}  // namespace jsn_resize
