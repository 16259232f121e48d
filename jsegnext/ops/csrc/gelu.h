// GELU (exact, erf form) for the CPU kernels (pointwise.h).
//
// erf_fast: erf(x) as x P(x^2) / Q(x^2) on [-4, 4] (erf is 1 to float precision beyond), a rational
// fit of degrees 6 / 4 (coefficients fitted for jsegnext), absolute error below 4e-7 in float
// arithmetic; unlike libm's erff it vectorises to a few FMAs and one division.
#ifndef JSN_GELU_H
#define JSN_GELU_H
#include <algorithm>
#include <cmath>

namespace jsn {

static inline float erf_fast(float x) {
    const float c = std::min(std::max(x, -4.f), 4.f), t = c * c;
    float p = 1.933583959612406e-08f;
    p = p * t - 1.969929826373118e-06f;
    p = p * t + 0.00015024268941488117f;
    p = p * t + 0.0040771206840872765f;
    p = p * t + 0.05175789073109627f;
    p = p * t + 0.20891475677490234f;
    p = p * t + 1.1283788681030273f;
    float q = 0.0010452765272930264f;
    q = q * t + 0.015116021037101746f;
    q = q * t + 0.11871074885129929f;
    q = q * t + 0.5184750556945801f;
    q = q * t + 1.f;
    return c * p / q;
}

// gelu(v) = v * Phi(v), Phi(v) = (1 + erf(v / sqrt 2)) / 2
static inline float gelu(float v) { return 0.5f * v * (1.f + erf_fast(v * 0.70710678118654752f)); }

}  // namespace jsn
#endif  // JSN_GELU_H
