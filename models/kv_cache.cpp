#include "models/kv_cache.h"

#include "core/check.h"

namespace tessera {

KvCache::KvCache(const TransformerConfig& config, int64_t batch, int64_t capacity, DType dtype, Device device)
    : capacity_(capacity), lengths_(static_cast<size_t>(batch), 0) {
  TS_CHECK(batch > 0 && capacity > 0, "KvCache: batch ", batch, " and capacity ", capacity, " must be positive");
  const Shape shape{batch, capacity, config.num_query_groups, config.head_dim()};
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    keys_.push_back(Tensor::zeros(shape, dtype, device));
    values_.push_back(Tensor::zeros(shape, dtype, device));
  }
}

int64_t KvCache::length(int64_t row) const {
  TS_CHECK(row >= 0 && row < batch(), "KvCache: row ", row, " outside the batch of ", batch());
  return lengths_[static_cast<size_t>(row)];
}

std::pair<Tensor, Tensor> KvCache::write(int64_t layer, int64_t row, const Tensor& k, const Tensor& v) {
  TS_CHECK(layer >= 0 && layer < num_layers(), "KvCache: layer ", layer, " outside the model's ", num_layers());
  const int64_t start = length(row), steps = k.size(1);
  const Tensor& keys = keys_[static_cast<size_t>(layer)];
  const Shape expected{1, steps, keys.size(2), keys.size(3)};
  TS_CHECK(k.shape() == expected && v.shape() == expected, "KvCache: expected one row's k and v ", expected, ", got ",
           k.shape(), " and ", v.shape());
  TS_CHECK(start + steps <= capacity_, "KvCache: row ", row, " holds ", start, " tokens; ", steps,
           " more exceed the capacity of ", capacity_, " (make the cache longer: prompt + new tokens)");
  Tensor row_keys = keys.narrow(0, row, 1), row_values = values_[static_cast<size_t>(layer)].narrow(0, row, 1);
  row_keys.narrow(1, start, steps).copy_(k);
  row_values.narrow(1, start, steps).copy_(v);
  return {row_keys.narrow(1, 0, start + steps), row_values.narrow(1, 0, start + steps)};
}

void KvCache::advance(int64_t steps) {
  for (int64_t& length : lengths_) {
    TS_CHECK(length + steps <= capacity_, "KvCache: advancing by ", steps, " exceeds the capacity of ", capacity_);
    length += steps;
  }
}

void KvCache::truncate(int64_t row, int64_t length) {
  TS_CHECK(length >= 0 && length <= this->length(row), "KvCache: cannot truncate row ", row, " holding ",
           this->length(row), " tokens to ", length);
  lengths_[static_cast<size_t>(row)] = length;
}

}  // namespace tessera
