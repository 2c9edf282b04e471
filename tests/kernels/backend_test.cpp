// Streams, events, buffers and device discovery: CPU semantics everywhere; CUDA discovery must
// degrade to "0 devices, with a reason" without throwing; CUDA semantics where a device exists.
#include "kernels/backend.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/kernels/reference.hpp"

#if STRATA_HAVE_CUDA
#include "kernels/cuda/check.hpp"
#endif

namespace strata::kernels {
namespace {

TEST(CpuBackend, StreamRunsInlineAndEventsAreComplete) {
  const Stream cpu = Stream::cpu();
  EXPECT_EQ(cpu.backend(), Backend::kCpu);
  EXPECT_EQ(cpu.native_handle(), nullptr);
  const Event first = cpu.record_event(EventTiming::kOn);
  const Event second = cpu.record_event(EventTiming::kOn);
  EXPECT_TRUE(first.is_complete());
  EXPECT_NO_THROW(second.synchronize());
  EXPECT_NO_THROW(cpu.wait(first));
  EXPECT_NO_THROW(cpu.synchronize());
  EXPECT_GE(Event::elapsed_ms(first, second), 0.0);
}

TEST(CpuBackend, BufferRoundTripAndBounds) {
  const Stream cpu = Stream::cpu();
  const std::vector<float> in = {1.0f, -2.0f, 3.5f, 0.25f, 8.0f};
  Buffer buffer(cpu, in.size() * sizeof(float));
  EXPECT_EQ(buffer.size_bytes(), in.size() * sizeof(float));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.data()) % 64, 0u);
  copy_to_buffer(cpu, buffer, in.data(), in.size() * sizeof(float)).synchronize();
  std::vector<float> out(in.size());
  copy_from_buffer(cpu, out.data(), buffer, out.size() * sizeof(float)).synchronize();
  EXPECT_EQ(out, in);
  EXPECT_THROW(copy_to_buffer(cpu, buffer, in.data(), 100 * sizeof(float)), std::out_of_range);

  Buffer moved = std::move(buffer);
  EXPECT_EQ(buffer.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(moved.size_bytes(), in.size() * sizeof(float));
  EXPECT_EQ(Buffer(cpu, 0).data(), nullptr);
}

TEST(CpuBackend, BusyWaitIsANoOpAndRejectsNegativeDurations) {
  const Stream cpu = Stream::cpu();
  EXPECT_TRUE(busy_wait(cpu, 1e6).is_complete());  // no queue to hold: returns at once
  EXPECT_THROW(busy_wait(cpu, -1.0), std::invalid_argument);
}

TEST(CudaDiscovery, CountNeverThrowsAndExplainsZero) {
  int count = -1;
  EXPECT_NO_THROW(count = cuda_device_count());
  EXPECT_GE(count, 0);
  if (!built_with_cuda()) {
    EXPECT_EQ(count, 0);
  }
  if (count == 0) {
    EXPECT_FALSE(cuda_unavailable_reason().empty());
    EXPECT_THROW(Stream::cuda(0), std::runtime_error);
    EXPECT_THROW(cuda_device_properties(0), std::out_of_range);
  } else {
    EXPECT_TRUE(cuda_unavailable_reason().empty());
  }
  EXPECT_THROW(cuda_device_properties(-1), std::out_of_range);
}

#if STRATA_HAVE_CUDA
TEST(CudaCheck, MessageNamesCallErrorHostAndDevice) {
  try {
    STRATA_CUDA_CHECK(cudaErrorInvalidValue);
    FAIL() << "STRATA_CUDA_CHECK did not throw";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("cudaErrorInvalidValue"), std::string::npos) << message;
    EXPECT_NE(message.find("host " + cuda_detail::host_name()), std::string::npos) << message;
    EXPECT_NE(message.find("device "), std::string::npos) << message;
    EXPECT_NE(message.find("backend_test.cpp"), std::string::npos) << message;
  }
}
#endif

TEST(CudaBackend, DevicePropertiesArePlausible) {
  STRATA_SKIP_WITHOUT_CUDA();
  for (int d = 0; d < cuda_device_count(); ++d) {
    const DeviceProperties p = cuda_device_properties(d);
    EXPECT_EQ(p.index, d);
    EXPECT_FALSE(p.name.empty());
    EXPECT_GT(p.sm_count, 0);
    EXPECT_GT(p.memory_bytes, std::uint64_t{1} << 30);
    EXPECT_GE(p.compute_capability_major, 7);
    std::printf("cuda:%d %s, %d SMs, %.1f GiB, sm_%d%d\n", d, p.name.c_str(), p.sm_count,
                static_cast<double>(p.memory_bytes) / (1 << 30), p.compute_capability_major,
                p.compute_capability_minor);
  }
}

TEST(CudaBackend, StreamsEventsAndBuffers) {
  STRATA_SKIP_WITHOUT_CUDA();
  const Stream producer = Stream::cuda(0);
  const Stream consumer = Stream::cuda(0);
  EXPECT_EQ(producer.backend(), Backend::kCuda);
  EXPECT_NE(producer.native_handle(), nullptr);
  std::vector<float> in(1 << 20);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
  Buffer a(producer, in.size() * sizeof(float));
  const Event start = producer.record_event(EventTiming::kOn);
  const Event copied = copy_to_buffer(producer, a, in.data(), in.size() * sizeof(float));
  const Event end = producer.record_event(EventTiming::kOn);
  consumer.wait(copied);  // cross-stream ordering through the event
  std::vector<float> out(in.size());
  copy_from_buffer(consumer, out.data(), a, out.size() * sizeof(float)).synchronize();
  EXPECT_TRUE(copied.is_complete());
  EXPECT_EQ(out, in);
  EXPECT_GE(Event::elapsed_ms(start, end), 0.0);
  EXPECT_THROW(Event::elapsed_ms(start, Stream::cpu().record_event()), std::invalid_argument);
  const Stream cpu = Stream::cpu();
  EXPECT_THROW(copy_to_buffer(cpu, a, in.data(), 4), std::invalid_argument);
  EXPECT_NO_THROW(cpu.wait(end));  // a CPU stream waits on a CUDA event by blocking
}

TEST(CudaBackend, WorkIsAsynchronous) {
  STRATA_SKIP_WITHOUT_CUDA();
  const Stream stream = Stream::cuda(0);
  const Event held = busy_wait(stream, 200e3);  // 200 ms on the device
  EXPECT_FALSE(held.is_complete()) << "busy_wait returned only after the device finished";
  const Event later = stream.record_event(EventTiming::kOn);
  EXPECT_FALSE(later.is_complete());
  stream.synchronize();
  EXPECT_TRUE(held.is_complete());
  EXPECT_TRUE(later.is_complete());
}

}  // namespace
}  // namespace strata::kernels
