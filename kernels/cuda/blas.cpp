// The linear layer's GEMMs on CUDA through cuBLAS (fp32, cuBLAS's default math: no TF32, so the
// results agree with the CPU's Eigen GEMMs within fp32 summation-order differences; bf16 tensors
// through cublasGemmEx with fp32 accumulation, CUBLAS_COMPUTE_32F, the tensor cores' path). Row-major
// tensors are column-major tensors transposed, so each row-major product C = A B runs as the
// column-major C^T = B^T A^T:
//   y = x W^T          ->  y^T  = W x^T        gemm(T, N, m = OUT, n = N,   k = IN)
//   dx = dy W          ->  dx^T = W^T dy^T     gemm(N, N, m = IN,  n = N,   k = OUT)
//   dW = dy^T x        ->  dW^T = x^T dy       gemm(N, T, m = IN,  n = OUT, k = N)
// with beta = 1 for accumulate. The bias and its gradient are separate kernels
// (elementwise.cu), in the CPU's order: the bias added after the product, the bias gradient
// summing rows in order from row 0.
//
// cuBLAS is loaded when the first GEMM runs (dlopen of libcublas.so.13), not linked: the library
// is hundreds of megabytes, and every process of a CUDA build (each `strata simulate` child of a
// sweep or search, every test) would otherwise map it at start (0.15 s and 250 MB each).
#include <cublas_v2.h>
#include <dlfcn.h>

#include <climits>
#include <map>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/model_ops_cuda.hpp"

namespace strata::kernels::cuda {
namespace {

// The cuBLAS entry points used here, resolved from the library at first use.
struct Cublas {
  decltype(&cublasCreate_v2) create;
  decltype(&cublasDestroy_v2) destroy;
  decltype(&cublasSetStream_v2) set_stream;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasSgemm_v2) sgemm;
  // cublasGemmEx's C signature (the header also declares C++ overloads of it).
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                            int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                            cublasGemmAlgo_t);
  decltype(&cublasGetStatusName) status_name;
  decltype(&cublasGetStatusString) status_string;
};

const Cublas& cublas() {
  static const Cublas api = [] {
    void* lib = nullptr;
    std::string why;
    for (const char* name : {"libcublas.so.13", "libcublas.so"}) {
      lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (lib != nullptr) break;
      const char* e = dlerror();
      why += std::string(why.empty() ? "" : "; ") + (e != nullptr ? e : name);
    }
    if (lib == nullptr) {
      throw std::runtime_error("cuBLAS could not be loaded (" + why +
                               "): put the CUDA toolkit's lib64 on LD_LIBRARY_PATH");
    }
    auto symbol = [lib](const char* name) {
      void* p = dlsym(lib, name);
      if (p == nullptr) throw std::runtime_error(std::string("cuBLAS has no ") + name);
      return p;
    };
    Cublas c{};
    c.create = reinterpret_cast<decltype(c.create)>(symbol("cublasCreate_v2"));
    c.destroy = reinterpret_cast<decltype(c.destroy)>(symbol("cublasDestroy_v2"));
    c.set_stream = reinterpret_cast<decltype(c.set_stream)>(symbol("cublasSetStream_v2"));
    c.set_math_mode = reinterpret_cast<decltype(c.set_math_mode)>(symbol("cublasSetMathMode"));
    c.sgemm = reinterpret_cast<decltype(c.sgemm)>(symbol("cublasSgemm_v2"));
    c.gemm_ex = reinterpret_cast<decltype(c.gemm_ex)>(symbol("cublasGemmEx"));
    c.status_name = reinterpret_cast<decltype(c.status_name)>(symbol("cublasGetStatusName"));
    c.status_string = reinterpret_cast<decltype(c.status_string)>(symbol("cublasGetStatusString"));
    return c;
  }();
  return api;
}

void check_cublas(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string(what) + " failed: " + cublas().status_name(status) + " (" +
                           cublas().status_string(status) + ") on host " +
                           cuda_detail::host_name());
}

// One cuBLAS handle per thread and device (a handle is not safe to share between threads that
// use it at once), made on first use and kept for the thread's life.
class Handles {
 public:
  ~Handles() {
    for (auto& [device, handle] : handles_) {
      (void)device;
      cublas().destroy(handle);  // at thread exit; errors (a context already gone) are ignored
    }
  }
  cublasHandle_t get(int device, cudaStream_t stream) {
    auto it = handles_.find(device);
    if (it == handles_.end()) {
      cublasHandle_t handle = nullptr;
      check_cublas(cublas().create(&handle), "cublasCreate");
      check_cublas(cublas().set_math_mode(handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
      it = handles_.emplace(device, handle).first;
    }
    check_cublas(cublas().set_stream(it->second, stream), "cublasSetStream");
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

// The column-major product C = op(A) op(B) (m x n, depth k) on bf16 tensors with fp32
// accumulation; beta 1 adds into C (read as bf16, the sum rounded once).
void gemm_bf16(cudaStream_t stream, int device, cublasOperation_t op_a, cublasOperation_t op_b,
               std::int64_t m, std::int64_t n, std::int64_t k, const bf16* a, std::int64_t lda,
               const bf16* b, std::int64_t ldb, bool accumulate, bf16* c, std::int64_t ldc,
               const char* what) {
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  check_cublas(cublas().gemm_ex(handle_for(device, stream), op_a, op_b, as_int(m, "m"),
                                as_int(n, "n"), as_int(k, "k"), &one, a, CUDA_R_16BF,
                                as_int(lda, "lda"), b, CUDA_R_16BF, as_int(ldb, "ldb"), &beta, c,
                                CUDA_R_16BF, as_int(ldc, "ldc"), CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT),
               what);
}

}  // namespace

void linear_forward(cudaStream_t stream, int device, bf16* y, const bf16* x, const bf16* weight,
                    const bf16* bias, std::int64_t n, std::int64_t in, std::int64_t out) {
  gemm_bf16(stream, device, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, weight, in, x, in, false, y, out,
            "cublasGemmEx (linear_forward, bf16)");
  if (bias != nullptr) add_bias_rows(stream, y, bias, n, out);
}

void linear_backward_data(cudaStream_t stream, int device, bf16* dx, const bf16* dy,
                          const bf16* weight, std::int64_t n, std::int64_t in, std::int64_t out,
                          bool accumulate) {
  gemm_bf16(stream, device, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, weight, in, dy, out, accumulate,
            dx, in, "cublasGemmEx (linear_backward_data, bf16)");
}

void linear_backward_weight(cudaStream_t stream, int device, bf16* dweight, bf16* dbias,
                            const bf16* dy, const bf16* x, std::int64_t n, std::int64_t in,
                            std::int64_t out, bool accumulate) {
  if (n > 0) {
    gemm_bf16(stream, device, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, x, in, dy, out, accumulate,
              dweight, in, "cublasGemmEx (linear_backward_weight, bf16)");
  } else if (!accumulate) {
    STRATA_CUDA_CHECK(cudaMemsetAsync(dweight, 0, sizeof(bf16) * out * in, stream));
  }
  if (dbias != nullptr) column_sums(stream, dbias, dy, n, out, accumulate);
}

void linear_forward(cudaStream_t stream, int device, float* y, const float* x, const float* weight,
                    const float* bias, std::int64_t n, std::int64_t in, std::int64_t out) {
  const float one = 1.0f, zero = 0.0f;
  check_cublas(cublas().sgemm(handle_for(device, stream), CUBLAS_OP_T, CUBLAS_OP_N,
                              as_int(out, "out"), as_int(n, "n"), as_int(in, "in"), &one, weight,
                              as_int(in, "in"), x, as_int(in, "in"), &zero, y, as_int(out, "out")),
               "cublasSgemm (linear_forward)");
  if (bias != nullptr) add_bias_rows(stream, y, bias, n, out);
}

void linear_backward_data(cudaStream_t stream, int device, float* dx, const float* dy,
                          const float* weight, std::int64_t n, std::int64_t in, std::int64_t out,
                          bool accumulate) {
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  check_cublas(
      cublas().sgemm(handle_for(device, stream), CUBLAS_OP_N, CUBLAS_OP_N, as_int(in, "in"),
                     as_int(n, "n"), as_int(out, "out"), &one, weight, as_int(in, "in"), dy,
                     as_int(out, "out"), &beta, dx, as_int(in, "in")),
      "cublasSgemm (linear_backward_data)");
}

void linear_backward_weight(cudaStream_t stream, int device, float* dweight, float* dbias,
                            const float* dy, const float* x, std::int64_t n, std::int64_t in,
                            std::int64_t out, bool accumulate) {
  if (n > 0) {
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    check_cublas(
        cublas().sgemm(handle_for(device, stream), CUBLAS_OP_N, CUBLAS_OP_T, as_int(in, "in"),
                       as_int(out, "out"), as_int(n, "n"), &one, x, as_int(in, "in"), dy,
                       as_int(out, "out"), &beta, dweight, as_int(in, "in")),
        "cublasSgemm (linear_backward_weight)");
  } else if (!accumulate) {
    STRATA_CUDA_CHECK(cudaMemsetAsync(dweight, 0, sizeof(float) * out * in, stream));
  }
  if (dbias != nullptr) column_sums(stream, dbias, dy, n, out, accumulate);
}

}  // namespace strata::kernels::cuda
