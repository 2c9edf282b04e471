// Internal: the CUDA runtime calls behind backend.hpp (streams, events, memory, devices), with
// CUDA handles passed as void* so that backend.cpp compiles without CUDA headers. Compiled only
// when STRATA_HAVE_CUDA; every function throws std::runtime_error via STRATA_CUDA_CHECK.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/backend.hpp"

namespace strata::kernels::cuda_detail {

// Device count, or 0 with `*reason` set (no driver, old driver, no device). Never throws.
int device_count(std::string* reason) noexcept;
DeviceProperties device_properties(int index);
// Makes `device` the calling thread's current device (kernel launches go to the current one).
void set_current_device(int device);

void* stream_create(int device);
void stream_destroy(void* stream) noexcept;
void stream_synchronize(void* stream, int device);
void stream_wait_event(void* stream, int device, void* event);

// Records a new event on `stream`; the shared_ptr destroys it.
std::shared_ptr<void> event_record(void* stream, int device, bool enable_timing);
bool event_query(void* event);
void event_synchronize(void* event);
double event_elapsed_ms(void* start, void* end);

// Enqueues a kernel that spins for `duration_ns` (kernels/cuda/busy_wait.cu).
void busy_wait(void* stream, int device, std::int64_t duration_ns);

void* device_malloc(int device, std::size_t size_bytes);
void device_free(int device, void* ptr) noexcept;
void memcpy_to_device(void* stream, int device, void* dst, const void* src, std::size_t bytes);
void memcpy_to_host(void* stream, int device, void* dst, const void* src, std::size_t bytes);
void memset_zero(void* stream, int device, void* dst, std::size_t bytes);

}  // namespace strata::kernels::cuda_detail
