// The CUDA runtime side of backend.hpp: devices, streams, events and memory. Plain C++ compiled
// against cudart (no device code), so it builds without nvcc's device passes.
#include "kernels/cuda/runtime.hpp"

#include <cuda_runtime.h>

#include <cstdlib>
#include <stdexcept>

#include "kernels/cuda/check.hpp"

namespace strata::kernels::cuda_detail {
namespace {

// Makes `device` current for the calls that follow (runtime calls act on the current device).
void use_device(int device) {
  int current = -1;
  STRATA_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) STRATA_CUDA_CHECK(cudaSetDevice(device));
}

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }
cudaEvent_t as_event(void* event) { return static_cast<cudaEvent_t>(event); }

}  // namespace

int device_count(std::string* reason) noexcept {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // the failure is reported through `reason`, not left sticky
    if (reason != nullptr) {
      *reason = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    }
    return 0;
  }
  if (count == 0 && reason != nullptr) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    *reason = std::string("the driver reports 0 devices") +
              (visible != nullptr ? std::string(" (CUDA_VISIBLE_DEVICES=") + visible + ")" : "");
  }
  return count;
}

DeviceProperties device_properties(int index) {
  cudaDeviceProp prop{};
  STRATA_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  DeviceProperties out;
  out.index = index;
  out.name = prop.name;
  out.sm_count = prop.multiProcessorCount;
  out.memory_bytes = static_cast<std::uint64_t>(prop.totalGlobalMem);
  out.l2_cache_bytes = static_cast<std::uint64_t>(prop.l2CacheSize);
  out.compute_capability_major = prop.major;
  out.compute_capability_minor = prop.minor;
  return out;
}

void set_current_device(int device) { use_device(device); }

void* stream_create(int device) {
  use_device(device);
  cudaStream_t stream = nullptr;
  STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return stream;
}

void stream_destroy(void* stream) noexcept {
  if (stream != nullptr) (void)cudaStreamDestroy(as_stream(stream));  // destructors never throw
}

void stream_synchronize(void* stream, int device) {
  use_device(device);
  STRATA_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

void stream_wait_event(void* stream, int device, void* event) {
  use_device(device);
  STRATA_CUDA_CHECK(cudaStreamWaitEvent(as_stream(stream), as_event(event), 0));
}

std::shared_ptr<void> event_record(void* stream, int device, bool enable_timing) {
  use_device(device);
  cudaEvent_t event = nullptr;
  STRATA_CUDA_CHECK(
      cudaEventCreateWithFlags(&event, enable_timing ? cudaEventDefault : cudaEventDisableTiming));
  std::shared_ptr<void> owned(event, [](void* e) { (void)cudaEventDestroy(as_event(e)); });
  STRATA_CUDA_CHECK(cudaEventRecord(event, as_stream(stream)));
  return owned;
}

bool event_query(void* event) {
  const cudaError_t status = cudaEventQuery(as_event(event));
  if (status == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  STRATA_CUDA_CHECK(status);
  return true;
}

void event_synchronize(void* event) { STRATA_CUDA_CHECK(cudaEventSynchronize(as_event(event))); }

double event_elapsed_ms(void* start, void* end) {
  STRATA_CUDA_CHECK(cudaEventSynchronize(as_event(end)));
  float ms = 0.0f;
  STRATA_CUDA_CHECK(cudaEventElapsedTime(&ms, as_event(start), as_event(end)));
  return static_cast<double>(ms);
}

void* device_malloc(int device, std::size_t size_bytes) {
  use_device(device);
  void* ptr = nullptr;
  STRATA_CUDA_CHECK(cudaMalloc(&ptr, size_bytes));  // 256-byte aligned
  return ptr;
}

void device_free(int device, void* ptr) noexcept {
  if (ptr == nullptr) return;
  if (cudaSetDevice(device) == cudaSuccess) (void)cudaFree(ptr);
}

void memcpy_to_device(void* stream, int device, void* dst, const void* src, std::size_t bytes) {
  use_device(device);
  STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, as_stream(stream)));
}

void memcpy_to_host(void* stream, int device, void* dst, const void* src, std::size_t bytes) {
  use_device(device);
  STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream)));
}

void memset_zero(void* stream, int device, void* dst, std::size_t bytes) {
  use_device(device);
  STRATA_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, as_stream(stream)));
}

}  // namespace strata::kernels::cuda_detail
