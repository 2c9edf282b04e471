// Streams, events, buffers and device discovery: the CPU side here, the CUDA side forwarded to
// kernels/cuda/runtime.cpp when built with CUDA (STRATA_HAVE_CUDA).
#include "kernels/backend.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <utility>

#if STRATA_HAVE_CUDA
#include "kernels/cuda/runtime.hpp"
#endif

namespace strata::kernels {
namespace {

constexpr std::size_t kHostAlignment = 64;  // a cache line; also enough for AVX-512 loads

[[noreturn]] void throw_no_cuda(const char* what) {
  throw std::runtime_error(std::string(what) +
                           ": CUDA is unavailable: " + cuda_unavailable_reason());
}

}  // namespace

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::kCpu:
      return "cpu";
    case Backend::kCuda:
      return "cuda";
  }
  return "unknown";
}

bool built_with_cuda() {
#if STRATA_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

// --- Device discovery ------------------------------------------------------------------------

int cuda_device_count() {
#if STRATA_HAVE_CUDA
  return cuda_detail::device_count(nullptr);
#else
  return 0;
#endif
}

std::string cuda_unavailable_reason() {
#if STRATA_HAVE_CUDA
  std::string reason;
  const int count = cuda_detail::device_count(&reason);
  return count > 0 ? std::string() : reason;
#else
  return "built without CUDA (STRATA_WITH_CUDA=OFF)";
#endif
}

DeviceProperties cuda_device_properties(int index) {
  const int count = cuda_device_count();
  if (index < 0 || index >= count) {
    throw std::out_of_range("cuda_device_properties: device " + std::to_string(index) +
                            " out of range (" + std::to_string(count) + " CUDA devices" +
                            (count == 0 ? ": " + cuda_unavailable_reason() : std::string()) + ")");
  }
#if STRATA_HAVE_CUDA
  return cuda_detail::device_properties(index);
#else
  return {};                      // unreachable: count is 0
#endif
}

// --- Events ----------------------------------------------------------------------------------

Event::Event() : cpu_time_(std::chrono::steady_clock::now()) {}

bool Event::is_complete() const {
#if STRATA_HAVE_CUDA
  if (backend_ == Backend::kCuda) return cuda_detail::event_query(native_.get());
#endif
  return true;
}

void Event::synchronize() const {
#if STRATA_HAVE_CUDA
  if (backend_ == Backend::kCuda) cuda_detail::event_synchronize(native_.get());
#endif
}

double Event::elapsed_ms(const Event& start, const Event& end) {
  if (start.backend_ != end.backend_) {
    throw std::invalid_argument("Event::elapsed_ms: events from different backends (" +
                                std::string(backend_name(start.backend_)) + ", " +
                                backend_name(end.backend_) + ")");
  }
#if STRATA_HAVE_CUDA
  if (start.backend_ == Backend::kCuda) {
    return cuda_detail::event_elapsed_ms(start.native_.get(), end.native_.get());
  }
#endif
  return std::chrono::duration<double, std::milli>(end.cpu_time_ - start.cpu_time_).count();
}

// --- Streams ---------------------------------------------------------------------------------

Stream Stream::cpu() { return Stream(Backend::kCpu, 0, nullptr); }

Stream Stream::cuda(int device) {
  const int count = cuda_device_count();
  if (count == 0) throw_no_cuda("Stream::cuda");
  if (device < 0 || device >= count) {
    throw std::out_of_range("Stream::cuda: device " + std::to_string(device) + " out of range (" +
                            std::to_string(count) + " CUDA devices)");
  }
#if STRATA_HAVE_CUDA
  return Stream(Backend::kCuda, device, cuda_detail::stream_create(device));
#else
  throw_no_cuda("Stream::cuda");  // unreachable: count is 0
#endif
}

Stream::Stream(Stream&& other) noexcept
    : backend_(other.backend_),
      device_(other.device_),
      native_(std::exchange(other.native_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    reset();
    backend_ = other.backend_;
    device_ = other.device_;
    native_ = std::exchange(other.native_, nullptr);
  }
  return *this;
}

Stream::~Stream() { reset(); }

void Stream::reset() noexcept {
#if STRATA_HAVE_CUDA
  if (backend_ == Backend::kCuda) cuda_detail::stream_destroy(native_);
#endif
  native_ = nullptr;
}

void Stream::synchronize() const {
#if STRATA_HAVE_CUDA
  if (backend_ == Backend::kCuda) cuda_detail::stream_synchronize(native_, device_);
#endif
}

Event Stream::record_event(EventTiming timing) const {
  Event event;  // CPU: complete, stamped now (all earlier work has already run)
#if STRATA_HAVE_CUDA
  if (backend_ == Backend::kCuda) {
    event.backend_ = Backend::kCuda;
    event.native_ = cuda_detail::event_record(native_, device_, timing == EventTiming::kOn);
  }
#else
  (void)timing;
#endif
  return event;
}

void Stream::wait(const Event& event) const {
#if STRATA_HAVE_CUDA
  if (event.backend() == Backend::kCuda) {
    if (backend_ == Backend::kCuda) {
      cuda_detail::stream_wait_event(native_, device_, event.native_handle());
    } else {
      event.synchronize();  // the CPU stream runs inline, so it must block here
    }
  }
#else
  (void)event;  // only CPU events exist, and they are complete
#endif
}

Event busy_wait(const Stream& stream, double duration_us) {
  if (!(duration_us >= 0.0)) {
    throw std::invalid_argument("busy_wait: duration_us = " + std::to_string(duration_us) +
                                " must be >= 0");
  }
#if STRATA_HAVE_CUDA
  if (stream.backend() == Backend::kCuda) {
    cuda_detail::busy_wait(stream.native_handle(), stream.device(),
                           static_cast<std::int64_t>(duration_us * 1e3));
  }
#endif
  return stream.record_event();
}

// --- Memory ----------------------------------------------------------------------------------

Buffer::Buffer(const Stream& stream, std::size_t size_bytes)
    : backend_(stream.backend()), device_(stream.device()), size_bytes_(size_bytes) {
  if (size_bytes == 0) return;
  if (backend_ == Backend::kCpu) {
    const std::size_t rounded = (size_bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
    data_ = std::aligned_alloc(kHostAlignment, rounded);
    if (data_ == nullptr) throw std::bad_alloc();
    return;
  }
#if STRATA_HAVE_CUDA
  data_ = cuda_detail::device_malloc(device_, size_bytes);
#endif
}

Buffer::Buffer(Buffer&& other) noexcept
    : backend_(other.backend_),
      device_(other.device_),
      size_bytes_(std::exchange(other.size_bytes_, 0)),
      data_(std::exchange(other.data_, nullptr)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    backend_ = other.backend_;
    device_ = other.device_;
    size_bytes_ = std::exchange(other.size_bytes_, 0);
    data_ = std::exchange(other.data_, nullptr);
  }
  return *this;
}

Buffer::~Buffer() { release(); }

void Buffer::release() noexcept {
  if (data_ == nullptr) return;
  if (backend_ == Backend::kCpu) {
    std::free(data_);
  } else {
#if STRATA_HAVE_CUDA
    cuda_detail::device_free(device_, data_);
#endif
  }
  data_ = nullptr;
  size_bytes_ = 0;
}

namespace {

void check_copy(const char* what, const Stream& stream, const Buffer& buffer, std::size_t bytes) {
  if (buffer.backend() != stream.backend() || buffer.device() != stream.device()) {
    throw std::invalid_argument(
        std::string(what) + ": buffer on " + backend_name(buffer.backend()) + ":" +
        std::to_string(buffer.device()) + " but stream on " + backend_name(stream.backend()) + ":" +
        std::to_string(stream.device()));
  }
  if (bytes > buffer.size_bytes()) {
    throw std::out_of_range(std::string(what) + ": " + std::to_string(bytes) +
                            " bytes exceed the buffer's " + std::to_string(buffer.size_bytes()));
  }
}

}  // namespace

Event copy_to_buffer(const Stream& stream, Buffer& dst, const void* src, std::size_t size_bytes) {
  check_copy("copy_to_buffer", stream, dst, size_bytes);
  if (size_bytes > 0) {
    if (stream.backend() == Backend::kCpu) {
      std::memcpy(dst.data(), src, size_bytes);
    } else {
#if STRATA_HAVE_CUDA
      cuda_detail::memcpy_to_device(stream.native_handle(), stream.device(), dst.data(), src,
                                    size_bytes);
#endif
    }
  }
  return stream.record_event();
}

Event copy_from_host(const Stream& stream, void* dst, const void* src, std::size_t size_bytes) {
  if (size_bytes > 0) {
    if (stream.backend() == Backend::kCpu) {
      std::memcpy(dst, src, size_bytes);
    } else {
#if STRATA_HAVE_CUDA
      cuda_detail::memcpy_to_device(stream.native_handle(), stream.device(), dst, src, size_bytes);
#endif
    }
  }
  return stream.record_event();
}

Event copy_to_host(const Stream& stream, void* dst, const void* src, std::size_t size_bytes) {
  if (size_bytes > 0) {
    if (stream.backend() == Backend::kCpu) {
      std::memcpy(dst, src, size_bytes);
    } else {
#if STRATA_HAVE_CUDA
      cuda_detail::memcpy_to_host(stream.native_handle(), stream.device(), dst, src, size_bytes);
#endif
    }
  }
  return stream.record_event();
}

Event fill_zero(const Stream& stream, void* dst, std::size_t size_bytes) {
  if (size_bytes > 0) {
    if (stream.backend() == Backend::kCpu) {
      std::memset(dst, 0, size_bytes);
    } else {
#if STRATA_HAVE_CUDA
      cuda_detail::memset_zero(stream.native_handle(), stream.device(), dst, size_bytes);
#endif
    }
  }
  return stream.record_event();
}

Event copy_from_buffer(const Stream& stream, void* dst, const Buffer& src, std::size_t size_bytes) {
  check_copy("copy_from_buffer", stream, src, size_bytes);
  if (size_bytes > 0) {
    if (stream.backend() == Backend::kCpu) {
      std::memcpy(dst, src.data(), size_bytes);
    } else {
#if STRATA_HAVE_CUDA
      cuda_detail::memcpy_to_host(stream.native_handle(), stream.device(), dst, src.data(),
                                  size_bytes);
#endif
    }
  }
  return stream.record_event();
}

}  // namespace strata::kernels
