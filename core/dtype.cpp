#include "core/dtype.h"

namespace tessera {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::Bool: return 1;
  }
  TS_CHECK(false, "unknown dtype ", static_cast<int>(dtype));
  return 0;
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::Bool: return "bool";
  }
  return "unknown";
}

DType dtype_from_name(std::string_view name) {
  if (name == "f32" || name == "float32" || name == "fp32" || name == "float") return DType::F32;
  if (name == "f64" || name == "float64" || name == "fp64" || name == "double") return DType::F64;
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  if (name == "f16" || name == "float16" || name == "fp16" || name == "half") return DType::F16;
  if (name == "i32" || name == "int32") return DType::I32;
  if (name == "i64" || name == "int64") return DType::I64;
  if (name == "bool") return DType::Bool;
  TS_CHECK(false, "unknown dtype '", name, "'; expected one of f32, f64, bf16, f16, i32, i64, bool");
  return DType::F32;
}

bool is_floating(DType dtype) {
  return dtype == DType::F32 || dtype == DType::F64 || dtype == DType::BF16 || dtype == DType::F16;
}

std::ostream& operator<<(std::ostream& os, DType dtype) { return os << dtype_name(dtype); }

}  // namespace tessera
