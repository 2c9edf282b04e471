// The linear layer's GEMMs on CUDA through cuBLAS (fp32, cuBLAS's default math: no TF32, so the
// results agree with the CPU's Eigen GEMMs within fp32 summation-order differences). Row-major
// tensors are column-major tensors transposed, so each row-major product C = A B runs as the
// column-major C^T = B^T A^T:
//   y = x W^T          ->  y^T  = W x^T        gemm(T, N, m = OUT, n = N,   k = IN)
//   dx = dy W          ->  dx^T = W^T dy^T     gemm(N, N, m = IN,  n = N,   k = OUT)
//   dW = dy^T x        ->  dW^T = x^T dy       gemm(N, T, m = IN,  n = OUT, k = N)
// with beta = 1 for accumulate. The bias and its gradient are separate kernels
// (elementwise.cu), in the CPU's order: the bias added after the product, the bias gradient
// summing rows in order from row 0.
#include <cublas_v2.h>

#include <climits>
#include <map>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/model_ops_cuda.hpp"

namespace strata::kernels::cuda {
namespace {

void check_cublas(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string(what) + " failed: " + cublasGetStatusName(status) + " (" +
                           cublasGetStatusString(status) + ") on host " + cuda_detail::host_name());
}

// One cuBLAS handle per thread and device (a handle is not safe to share between threads that
// use it at once), made on first use and kept for the thread's life.
class Handles {
 public:
  ~Handles() {
    for (auto& [device, handle] : handles_) {
      (void)device;
      cublasDestroy(handle);  // at thread exit; errors (a context already gone) are ignored
    }
  }
  cublasHandle_t get(int device, cudaStream_t stream) {
    auto it = handles_.find(device);
    if (it == handles_.end()) {
      cublasHandle_t handle = nullptr;
      check_cublas(cublasCreate(&handle), "cublasCreate");
      check_cublas(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
      it = handles_.emplace(device, handle).first;
    }
    check_cublas(cublasSetStream(it->second, stream), "cublasSetStream");
    return it->second;
  }

 private:
  std::map<int, cublasHandle_t> handles_;
};

cublasHandle_t handle_for(int device, cudaStream_t stream) {
  thread_local Handles handles;
  return handles.get(device, stream);
}

int as_int(std::int64_t v, const char* what) {
  if (v > INT_MAX) {
    throw std::invalid_argument(std::string(what) + " = " + std::to_string(v) +
                                " exceeds cuBLAS's 32-bit sizes");
  }
  return static_cast<int>(v);
}

}  // namespace

void linear_forward(cudaStream_t stream, int device, float* y, const float* x, const float* weight,
                    const float* bias, std::int64_t n, std::int64_t in, std::int64_t out) {
  const float one = 1.0f, zero = 0.0f;
  check_cublas(cublasSgemm(handle_for(device, stream), CUBLAS_OP_T, CUBLAS_OP_N, as_int(out, "out"),
                           as_int(n, "n"), as_int(in, "in"), &one, weight, as_int(in, "in"), x,
                           as_int(in, "in"), &zero, y, as_int(out, "out")),
               "cublasSgemm (linear_forward)");
  if (bias != nullptr) add_bias_rows(stream, y, bias, n, out);
}

void linear_backward_data(cudaStream_t stream, int device, float* dx, const float* dy,
                          const float* weight, std::int64_t n, std::int64_t in, std::int64_t out,
                          bool accumulate) {
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  check_cublas(cublasSgemm(handle_for(device, stream), CUBLAS_OP_N, CUBLAS_OP_N, as_int(in, "in"),
                           as_int(n, "n"), as_int(out, "out"), &one, weight, as_int(in, "in"), dy,
                           as_int(out, "out"), &beta, dx, as_int(in, "in")),
               "cublasSgemm (linear_backward_data)");
}

void linear_backward_weight(cudaStream_t stream, int device, float* dweight, float* dbias,
                            const float* dy, const float* x, std::int64_t n, std::int64_t in,
                            std::int64_t out, bool accumulate) {
  if (n > 0) {
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    check_cublas(cublasSgemm(handle_for(device, stream), CUBLAS_OP_N, CUBLAS_OP_T, as_int(in, "in"),
                             as_int(out, "out"), as_int(n, "n"), &one, x, as_int(in, "in"), dy,
                             as_int(out, "out"), &beta, dweight, as_int(in, "in")),
                 "cublasSgemm (linear_backward_weight)");
  } else if (!accumulate) {
    STRATA_CUDA_CHECK(cudaMemsetAsync(dweight, 0, sizeof(float) * out * in, stream));
  }
  if (dbias != nullptr) column_sums(stream, dbias, dy, n, out, accumulate);
}

}  // namespace strata::kernels::cuda
