// Device-side loads and stores of the kernels' storage types (kernels/dtype.hpp): a kernel
// templated on its storage type T reads every element as fp32 (ld), computes in fp32 and rounds
// each stored element once to nearest even (st<T>), so the bf16 kernels share the fp32 ones'
// code and arithmetic.
#pragma once

#include <cuda_bf16.h>

#include "kernels/dtype.hpp"

namespace strata::kernels::cuda {

__device__ __forceinline__ float ld(float x) { return x; }
__device__ __forceinline__ float ld(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T st(float v);
template <>
__device__ __forceinline__ float st<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 st<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// The host API's bf16 pointers as CUDA's type (the same two bytes).
inline __nv_bfloat16* dev(bf16* p) { return reinterpret_cast<__nv_bfloat16*>(p); }
inline const __nv_bfloat16* dev(const bf16* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }
static_assert(sizeof(__nv_bfloat16) == sizeof(bf16), "bf16 and __nv_bfloat16 share a layout");

}  // namespace strata::kernels::cuda
