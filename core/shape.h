// Shapes and strides (in elements, row-major by default) and the helpers every op uses:
// dimension normalisation, broadcasting, contiguity. Dimension names used across Tessera:
// B batch, T sequence, C channels (hidden), H query heads, KV key/value heads, D head dim,
// V vocabulary, N rows (B*T flattened).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
// Maps a possibly negative dim into [0, ndim); `op` names the caller in the error.
int64_t normalize_dim(int64_t dim, int64_t ndim, std::string_view op);
// NumPy broadcasting of two shapes; throws naming `op` and both shapes when they conflict.
Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op);
std::string shape_str(const Shape& shape);

std::ostream& operator<<(std::ostream& os, const Shape& shape);

}  // namespace tessera
