// CPU ops of elementwise_ops.hpp: plain loops, one formula per element (the compiler may
// vectorize them across elements, which changes no result: there is no reduction to reorder).
#include "kernels/cpu/elementwise_ops_cpu.hpp"

namespace strata::kernels::cpu {

void add_inplace(float* y, const float* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = y[i] + x[i];
}

void scale_inplace(float* y, float alpha, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = alpha * y[i];
}

void copy_columns(float* y, std::int64_t ldy, const float* x, std::int64_t ldx, std::int64_t rows,
                  std::int64_t width, bool accumulate) {
  for (std::int64_t i = 0; i < rows; ++i) {
    float* yr = y + i * ldy;        // (width)
    const float* xr = x + i * ldx;  // (width)
    if (accumulate) {
      for (std::int64_t j = 0; j < width; ++j) yr[j] = yr[j] + xr[j];
    } else {
      for (std::int64_t j = 0; j < width; ++j) yr[j] = xr[j];
    }
  }
}

void add_residual_bias(float* y, const float* residual, const float* bias, std::int64_t rows,
                       std::int64_t c) {
  for (std::int64_t i = 0; i < rows; ++i) {
    float* yr = y + i * c;               // (C)
    const float* rr = residual + i * c;  // (C)
    if (bias != nullptr) {
      for (std::int64_t j = 0; j < c; ++j) yr[j] = (yr[j] + rr[j]) + bias[j];
    } else {
      for (std::int64_t j = 0; j < c; ++j) yr[j] = yr[j] + rr[j];
    }
  }
}

void bias_backward(float* dbias, const float* dy, std::int64_t rows, std::int64_t c) {
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* g = dy + i * c;  // (C)
    for (std::int64_t j = 0; j < c; ++j) dbias[j] += g[j];
  }
}

}  // namespace strata::kernels::cpu
