// The CPU kernels of pointwise.h as a translation unit of their own, to compile and check them
// outside jsegnext (which hands pointwise.h to jt.code):
//   g++ -std=c++14 -O2 -march=native -fopenmp -Wall -c pointwise.cc -o pointwise.o
#include "pointwise.h"

namespace jsn_pw {

// Calls (never made) of every kernel and epilogue variant the models use, so that the compiler
// generates them all.
void compile_all(const float* in, float* out) {
    pointwise<0, false, false>(in, in, in, nullptr, nullptr, nullptr, out, 0, 0, 0, 0, 0);
    pointwise<1, false, false>(in, in, in, nullptr, nullptr, nullptr, out, 0, 0, 0, 0, 0);
    pointwise<2, true, true>(in, in, in, in, in, in, out, 0, 0, 0, 0, 0);
    pointwise_backward(in, in, in, out, out, out, 0, 0, 0, 0, 0);
    pointwise2<true>(in, in, in, in, in, in, in, in, out, 0, 0, 0, 0, 0, 0);
    pointwise2<false>(in, in, in, in, in, in, nullptr, nullptr, out, 0, 0, 0, 0, 0, 0);
    mlp(in, in, in, in, in, in, in, out, 0, 0, 0, 0, 0, 0);
    group_norm<true, true>(in, in, in, in, out, 0, 0, 0, 1, 1e-5f);
    group_norm<false, false>(in, in, in, nullptr, out, 0, 0, 0, 1, 1e-5f);
    channel_norm(in, in, in, out, 0, 0, 0, 1e-5f);
    nmf(in, in, out, 0, 0, 0, 0, 0, 1.f);
}

}  // namespace jsn_pw
