// Device tensors, copies and the caching allocator on a GPU, against the host values.
#include <gtest/gtest.h>

#include <cmath>

#include "core/cuda/cuda_backend.h"
#include "core/ops/ops.h"
#include "support/gpu.h"

namespace tessera {
namespace {

const Device kGpu = Device::cuda(0);

TEST(GpuMemory, HostDeviceRoundTripIsExactForEveryDtype) {
  TS_REQUIRE_GPU();
  Generator g(3);
  Tensor host = randn({37, 5}, g, DType::F64);
  for (DType dtype : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64, DType::Bool}) {
    Tensor want = host.to(dtype);
    Tensor back = want.to(kGpu).to(Device::cpu());
    EXPECT_EQ(back.dtype(), dtype);
    EXPECT_EQ(back.to_vector<double>(), want.to_vector<double>()) << dtype;
  }
}

TEST(GpuMemory, ConversionsOnTheDeviceMatchTheCpu) {
  TS_REQUIRE_GPU();
  Generator g(4);
  Tensor host = scale(randn({64, 3}, g, DType::F64), 1000.0);
  for (DType from : {DType::F64, DType::F32, DType::BF16}) {
    for (DType to : {DType::F32, DType::BF16, DType::F16, DType::I32, DType::I64, DType::Bool}) {
      Tensor src = host.to(from);
      Tensor on_gpu = src.to(kGpu).to(to).to(Device::cpu());
      EXPECT_EQ(on_gpu.to_vector<double>(), src.to(to).to_vector<double>()) << from << " -> " << to;
    }
  }
}

TEST(GpuMemory, StridedViewsCopyLikeTheCpu) {
  TS_REQUIRE_GPU();
  Generator g(5);
  Tensor host = randn({4, 6, 5}, g);
  Tensor gpu = host.to(kGpu);
  // Permuted and narrowed reads, an expanded (stride 0) read, and a write into a strided view.
  EXPECT_EQ(gpu.permute({2, 0, 1}).contiguous().to_vector<float>(), host.permute({2, 0, 1}).contiguous().to_vector<float>());
  EXPECT_EQ(gpu.narrow(1, 2, 3).to_vector<float>(), host.narrow(1, 2, 3).to_vector<float>());
  Tensor row = randn({1, 5}, g);
  EXPECT_EQ(row.to(kGpu).expand({3, 5}).contiguous().to_vector<float>(), row.expand({3, 5}).contiguous().to_vector<float>());
  Tensor target = Tensor::zeros({6, 4}, DType::F32, kGpu);
  target.transpose(0, 1).narrow(0, 1, 2).copy_(host.narrow(0, 0, 2).narrow(2, 0, 1).squeeze(2));
  Tensor target_cpu = Tensor::zeros({6, 4});
  target_cpu.transpose(0, 1).narrow(0, 1, 2).copy_(host.narrow(0, 0, 2).narrow(2, 0, 1).squeeze(2));
  EXPECT_EQ(target.to_vector<float>(), target_cpu.to_vector<float>());
}

// Views whose last dim is contiguous on both sides take the row-vector copy: the q/k/v slices of
// a fused projection (read), cat into slices (write), at every vector width (16-byte rows, rows
// of 6 or 5 elements) and with a view that starts one element into its buffer (misaligned).
TEST(GpuMemory, RowContiguousViewsCopyLikeTheCpuAtEveryVectorWidth) {
  TS_REQUIRE_GPU();
  Generator g(6);
  for (DType dtype : {DType::BF16, DType::F32, DType::F64, DType::I64}) {
    for (int64_t row : {64, 6, 5}) {
      Tensor host = scale(randn({2, 3, 4, row}, g, DType::F64), 100.0).to(dtype);
      Tensor gpu = host.to(kGpu);
      for (auto [start, length] : {std::pair<int64_t, int64_t>{0, 2}, {2, 1}, {3, 1}}) {
        EXPECT_EQ(gpu.narrow(2, start, length).contiguous().to_vector<double>(),
                  host.narrow(2, start, length).contiguous().to_vector<double>())
            << dtype << " row " << row << " slice " << start;
      }
      std::vector<Tensor> parts_gpu = {gpu.narrow(2, 0, 3), gpu.narrow(2, 3, 1)};
      std::vector<Tensor> parts_cpu = {host.narrow(2, 0, 3), host.narrow(2, 3, 1)};
      EXPECT_EQ(cat({parts_gpu[1], parts_gpu[0]}, 2).to_vector<double>(),
                cat({parts_cpu[1], parts_cpu[0]}, 2).to_vector<double>())
          << dtype << " row " << row << " cat";
      Tensor shifted_host = scale(randn({2 * 3 * 4 * row + 1}, g, DType::F64), 100.0).to(dtype);
      Tensor shifted = shifted_host.to(kGpu).narrow(0, 1, 2 * 3 * 4 * row).view({2, 3, 4, row});
      Tensor shifted_cpu = shifted_host.narrow(0, 1, 2 * 3 * 4 * row).view({2, 3, 4, row});
      EXPECT_EQ(shifted.narrow(2, 1, 2).contiguous().to_vector<double>(),
                shifted_cpu.narrow(2, 1, 2).contiguous().to_vector<double>())
          << dtype << " row " << row << " misaligned";
    }
  }
}

TEST(GpuMemory, FillWritesEveryElementOfAStridedView) {
  TS_REQUIRE_GPU();
  Tensor t = testing::poisoned({5, 7}, DType::BF16, kGpu);
  t.narrow(1, 2, 3).fill_(2.5);
  std::vector<float> v = t.to_vector<float>();
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 7; ++c) {
      float x = v[static_cast<size_t>(r * 7 + c)];
      if (c >= 2 && c < 5) EXPECT_EQ(x, 2.5f);
      else EXPECT_TRUE(std::isnan(x));
    }
}

TEST(GpuMemory, CachingAllocatorReusesBlocksAfterWarmUp) {
  TS_REQUIRE_GPU();
  CudaCachingAllocator& allocator = cuda_backend(0).caching_allocator();
  auto step = [] {
    std::vector<Tensor> live;
    for (int64_t n : {1000, 250000, 3000000, 1000, 77})
      live.push_back(Tensor::empty({n}, DType::F32, kGpu));
  };
  step();  // warm-up
  uint64_t device_allocations = allocator.stats().device_allocations;
  size_t reserved = allocator.stats().reserved_bytes;
  for (int i = 0; i < 20; ++i) step();
  EXPECT_EQ(allocator.stats().device_allocations, device_allocations) << "cudaMalloc in the steady state";
  EXPECT_EQ(allocator.stats().reserved_bytes, reserved);
  EXPECT_GE(allocator.stats().peak_allocated_bytes, size_t{3000000} * 4);
}

TEST(GpuMemory, AnOutOfRangeDeviceIsAClearError) {
  TS_REQUIRE_GPU();
  EXPECT_THROW(Tensor::zeros({2}, DType::F32, Device::cuda(4096)), Error);
}

}  // namespace
}  // namespace tessera
