// The small part of the HDF5 C API that checkpoints use, behind RAII handles: one file,
// groups created on demand from slash paths ("optimizer/exp_avg"), f32 datasets of any shape,
// and int64/uint64/string attributes on groups and datasets.
//
// Integrity: files are written in the HDF5 1.8+ format, whose metadata (superblock, object
// headers, attribute heaps) carries checksums, and every dataset is chunked with a Fletcher-32
// checksum filter, so a truncated or bit-flipped file fails to open or to read instead of
// returning wrong numbers. Any failure throws tessera::Error naming the file, the object and
// HDF5's own reason; HDF5's automatic error printing is off while a file is open.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/shape.h"

namespace tessera {

// Owns one HDF5 identifier and closes it with the matching H5*close function.
class Hdf5Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Hdf5Handle() = default;
  Hdf5Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Hdf5Handle() { reset(); }
  Hdf5Handle(Hdf5Handle&& other) noexcept : id_(other.id_), closer_(other.closer_) { other.id_ = H5I_INVALID_HID; }
  Hdf5Handle& operator=(Hdf5Handle&& other) noexcept;
  Hdf5Handle(const Hdf5Handle&) = delete;
  Hdf5Handle& operator=(const Hdf5Handle&) = delete;

  hid_t get() const { return id_; }
  // Closes now; returns HDF5's status (a destructor cannot report it).
  herr_t reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Turns HDF5's automatic error-stack printing off for its lifetime and restores it after.
class Hdf5QuietErrors {
 public:
  Hdf5QuietErrors();
  ~Hdf5QuietErrors();
  Hdf5QuietErrors(const Hdf5QuietErrors&) = delete;
  Hdf5QuietErrors& operator=(const Hdf5QuietErrors&) = delete;

 private:
  H5E_auto2_t previous_function_ = nullptr;
  void* previous_data_ = nullptr;
};

class Hdf5File {
 public:
  static Hdf5File create(const std::string& path);  // replaces an existing file
  static Hdf5File open_read_only(const std::string& path);
  // The same, on the heap (a Hdf5File cannot move: it holds its quiet-errors scope).
  static std::unique_ptr<Hdf5File> open_read_only_unique(const std::string& path);

  const std::string& path() const { return path_; }
  // Writes everything out and closes the file; errors throw (the destructor only closes).
  void close();

  bool exists(const std::string& object) const;
  // Names of the datasets directly inside `group`, sorted.
  std::vector<std::string> dataset_names(const std::string& group) const;

  void write_f32(const std::string& dataset, const Shape& shape, const float* values);
  Shape dataset_shape(const std::string& dataset) const;
  std::vector<float> read_f32(const std::string& dataset) const;
  // Elements [begin, begin + count) of a 1-D dataset (only the chunks holding them are read).
  std::vector<float> read_f32_range(const std::string& dataset, int64_t begin, int64_t count) const;

  // Attributes on a group or dataset ("" or "/" is the root group); the group is created when missing.
  void write_int_attribute(const std::string& object, const std::string& name, int64_t value);
  void write_uint_attribute(const std::string& object, const std::string& name, uint64_t value);
  void write_double_attribute(const std::string& object, const std::string& name, double value);
  void write_string_attribute(const std::string& object, const std::string& name, const std::string& value);
  bool has_attribute(const std::string& object, const std::string& name) const;
  int64_t read_int_attribute(const std::string& object, const std::string& name) const;
  uint64_t read_uint_attribute(const std::string& object, const std::string& name) const;
  double read_double_attribute(const std::string& object, const std::string& name) const;
  std::string read_string_attribute(const std::string& object, const std::string& name) const;

 private:
  enum class Mode { Create, ReadOnly };
  Hdf5File(std::string path, Mode mode);
  Hdf5Handle open_object(const std::string& object) const;
  // Opens a group or dataset; a missing object is created as a group (with its parents).
  Hdf5Handle open_or_create(const std::string& object);
  void write_attribute(const std::string& object, const std::string& name, hid_t type, const void* value);
  void read_attribute(const std::string& object, const std::string& name, hid_t type, void* value) const;

  Hdf5QuietErrors quiet_;  // first member: HDF5 is quiet from opening the file to closing it
  std::string path_;
  Hdf5Handle file_;
};

}  // namespace tessera
