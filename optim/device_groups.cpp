#include "optim/device_groups.h"

#include <algorithm>

namespace tessera {

std::vector<DeviceGradients> gradients_by_device(const std::vector<Tensor>& parameters) {
  std::vector<DeviceGradients> groups;
  for (const Tensor& p : parameters) {
    if (!p.grad().defined()) continue;
    auto it = std::find_if(groups.begin(), groups.end(), [&](const DeviceGradients& g) { return g.device == p.device(); });
    if (it == groups.end()) {
      groups.push_back({p.device(), {}});
      it = groups.end() - 1;
    }
    it->grads.push_back(p.grad());
  }
  return groups;
}

}  // namespace tessera
