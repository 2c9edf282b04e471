// The execution backends of kernels/: where memory lives (Buffer), where work runs (Stream) and
// how completion is observed (Event), for the CPU and, when built with CUDA, for CUDA devices.
// Following DESIGN "Asynchrony from the start", every op takes a Stream and returns an Event.
// This header never includes CUDA headers, so CPU-only code can use it unchanged.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace strata::kernels {

enum class Backend { kCpu, kCuda };

// "cpu" or "cuda".
const char* backend_name(Backend backend);

// True when this build has the CUDA backend (STRATA_WITH_CUDA=ON), whether or not a device exists.
bool built_with_cuda();

// Eigen's version ("3.4.0") when the CPU kernels are built on it, else "" (plain loops): for the
// provenance of measured outputs.
std::string eigen_version();

// --- Device discovery ------------------------------------------------------------------------

struct DeviceProperties {
  int index = 0;
  std::string name;                  // e.g. "NVIDIA H100 80GB HBM3"
  int sm_count = 0;                  // streaming multiprocessors
  std::uint64_t memory_bytes = 0;    // total global memory
  std::uint64_t l2_cache_bytes = 0;  // used by the bench to rotate buffers over 2x L2
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
};

// Number of usable CUDA devices. Never throws: returns 0 when built without CUDA, when no driver
// is installed, when the driver is older than the runtime, or when no GPU is visible.
int cuda_device_count();

// Why cuda_device_count() is 0 ("built without CUDA", "cudaErrorNoDevice: no CUDA-capable device
// is detected", ...); empty when at least one device is usable.
std::string cuda_unavailable_reason();

// Properties of device `index` in [0, cuda_device_count()). Throws std::out_of_range otherwise.
DeviceProperties cuda_device_properties(int index);

// --- Events ----------------------------------------------------------------------------------

enum class EventTiming { kOff, kOn };

// A point in a stream's work. CPU events are complete when created (CPU streams run work inline)
// and carry the host time of their recording. CUDA events wrap a cudaEvent_t; copies share it.
class Event {
 public:
  Event();  // a completed CPU event recorded now

  Backend backend() const { return backend_; }
  bool is_complete() const;  // cudaEventQuery for CUDA; always true for CPU
  void synchronize() const;  // blocks the host until the event is complete

  // Milliseconds from `start` to `end`. Both must come from the same backend; CUDA events must
  // have been recorded with EventTiming::kOn. Synchronizes `end`.
  static double elapsed_ms(const Event& start, const Event& end);

  // cudaEvent_t for CUDA events, nullptr for CPU events.
  void* native_handle() const { return native_.get(); }

 private:
  friend class Stream;
  Backend backend_ = Backend::kCpu;
  std::chrono::steady_clock::time_point cpu_time_;
  std::shared_ptr<void> native_;  // owns the cudaEvent_t
};

// --- Streams ---------------------------------------------------------------------------------

// An ordered queue of work on one backend and device. A CPU stream runs each op to completion
// before the call returns. A CUDA stream owns a non-blocking cudaStream_t on one device; ops
// enqueue kernels and return immediately. Move-only.
class Stream {
 public:
  static Stream cpu();
  // Creates a stream on CUDA device `device`. Throws std::runtime_error (with the reason from
  // cuda_unavailable_reason()) when CUDA is unavailable, std::out_of_range for a bad index.
  static Stream cuda(int device = 0);

  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  Backend backend() const { return backend_; }
  int device() const { return device_; }  // CUDA device index; 0 for the CPU

  // Blocks the host until all work enqueued so far is complete.
  void synchronize() const;
  // An event that completes once all work enqueued so far is complete.
  Event record_event(EventTiming timing = EventTiming::kOff) const;
  // Work enqueued after this call starts only once `event` is complete. A CPU stream waiting on a
  // CUDA event blocks the host; a CUDA stream waiting on a CPU event returns at once.
  void wait(const Event& event) const;

  // cudaStream_t for CUDA streams, nullptr for the CPU stream.
  void* native_handle() const { return native_; }

 private:
  Stream(Backend backend, int device, void* native) noexcept
      : backend_(backend), device_(device), native_(native) {}
  void reset() noexcept;
  Backend backend_ = Backend::kCpu;
  int device_ = 0;
  void* native_ = nullptr;  // owned cudaStream_t
};

// Holds `stream` busy for about `duration_us` and returns an event for its end: a CUDA stream
// runs a spinning one-thread kernel, so the host can enqueue work behind it (benchmarks use this
// to time back-to-back kernels rather than launch gaps; tests to observe asynchrony). A no-op
// on the CPU stream, which has no queue to fill. Throws std::invalid_argument if negative.
Event busy_wait(const Stream& stream, double duration_us);

// --- Memory ----------------------------------------------------------------------------------

// An owned, uninitialized allocation on a stream's backend and device (host memory for the CPU,
// cudaMalloc for CUDA), aligned to at least 64 bytes. Move-only.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Stream& stream, std::size_t size_bytes);
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  Backend backend() const { return backend_; }
  int device() const { return device_; }
  std::size_t size_bytes() const { return size_bytes_; }
  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }

 private:
  void release() noexcept;
  Backend backend_ = Backend::kCpu;
  int device_ = 0;
  std::size_t size_bytes_ = 0;
  void* data_ = nullptr;
};

// Copies between host memory and a Buffer on `stream`. The host memory must stay valid and
// unchanged until the returned event is complete. Throws std::out_of_range if `size_bytes`
// exceeds the buffer and std::invalid_argument if the buffer is not on the stream's backend.
Event copy_to_buffer(const Stream& stream, Buffer& dst, const void* src, std::size_t size_bytes);
Event copy_from_buffer(const Stream& stream, void* dst, const Buffer& src, std::size_t size_bytes);

// The same on memory inside a Buffer of the stream's backend (a view: a pointer and a size the
// caller has checked): host -> that memory, that memory -> host, and zeroing it. On the CPU
// they run at once; on CUDA they are enqueued (the host memory must stay valid until the event
// completes).
Event copy_from_host(const Stream& stream, void* dst, const void* src, std::size_t size_bytes);
Event copy_to_host(const Stream& stream, void* dst, const void* src, std::size_t size_bytes);
Event fill_zero(const Stream& stream, void* dst, std::size_t size_bytes);

}  // namespace strata::kernels
