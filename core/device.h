// Where a tensor's memory lives: the host ("cpu") or one GPU ("cuda:N").
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

namespace tessera {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index) { return {DeviceType::CUDA, index}; }
  static Device parse(std::string_view text);  // "cpu", "cuda", "cuda:3"

  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const;
  bool operator==(const Device&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Device& device);

}  // namespace tessera
