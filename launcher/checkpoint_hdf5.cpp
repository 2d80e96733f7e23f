#include "launcher/checkpoint_hdf5.h"

#include <algorithm>

#include "core/check.h"

namespace tessera {

namespace {

// HDF5's reasons for the last failure, outermost first, without repeats; clears the stack.
std::string hdf5_reason() {
  std::vector<std::string> reasons;
  auto collect = [](unsigned, const H5E_error2_t* error, void* data) -> herr_t {
    auto& out = *static_cast<std::vector<std::string>*>(data);
    if (error->desc != nullptr && *error->desc != '\0' && std::find(out.begin(), out.end(), error->desc) == out.end())
      out.emplace_back(error->desc);
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect, &reasons);
  H5Eclear2(H5E_DEFAULT);
  std::reverse(reasons.begin(), reasons.end());
  std::string joined;
  for (const std::string& r : reasons) joined += (joined.empty() ? "" : ": ") + r;
  return joined.empty() ? "HDF5 gave no reason" : joined;
}

hid_t checked(hid_t id, const std::string& path, const std::string& what) {
  TS_CHECK(id >= 0, path, ": cannot ", what, " (", hdf5_reason(), ")");
  return id;
}

void checked_status(herr_t status, const std::string& path, const std::string& what) {
  TS_CHECK(status >= 0, path, ": cannot ", what, " (", hdf5_reason(), ")");
}

std::string object_name(const std::string& object) { return object.empty() ? "/" : object; }

// Link-creation properties that create missing parent groups.
Hdf5Handle intermediate_groups(const std::string& path) {
  Hdf5Handle lcpl(checked(H5Pcreate(H5P_LINK_CREATE), path, "create link properties"), H5Pclose);
  checked_status(H5Pset_create_intermediate_group(lcpl.get(), 1), path, "set link properties");
  return lcpl;
}

// Chunks of whole rows, about 16 MiB each (HDF5 caps a chunk at 4 GiB), each Fletcher-32 checksummed.
Hdf5Handle checksummed_chunks(const Shape& shape, const std::string& path) {
  Hdf5Handle dcpl(checked(H5Pcreate(H5P_DATASET_CREATE), path, "create dataset properties"), H5Pclose);
  if (shape.empty() || shape_numel(shape) == 0) return dcpl;  // nothing to chunk (scalar or empty)
  constexpr int64_t kChunkBytes = 16 << 20;
  int64_t row_bytes = int64_t(sizeof(float)) * shape_numel(shape) / shape[0];
  std::vector<hsize_t> chunk(shape.begin(), shape.end());
  chunk[0] = hsize_t(std::clamp<int64_t>(kChunkBytes / row_bytes, 1, shape[0]));
  checked_status(H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()), path, "set the chunk shape");
  checked_status(H5Pset_fletcher32(dcpl.get()), path, "enable Fletcher-32 checksums");
  return dcpl;
}

}  // namespace

Hdf5Handle& Hdf5Handle::operator=(Hdf5Handle&& other) noexcept {
  if (this != &other) {
    reset();
    id_ = other.id_;
    closer_ = other.closer_;
    other.id_ = H5I_INVALID_HID;
  }
  return *this;
}

herr_t Hdf5Handle::reset() {
  herr_t status = 0;
  if (id_ >= 0 && closer_ != nullptr) status = closer_(id_);
  id_ = H5I_INVALID_HID;
  return status;
}

Hdf5QuietErrors::Hdf5QuietErrors() {
  H5Eget_auto2(H5E_DEFAULT, &previous_function_, &previous_data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

Hdf5QuietErrors::~Hdf5QuietErrors() { H5Eset_auto2(H5E_DEFAULT, previous_function_, previous_data_); }

Hdf5File::Hdf5File(std::string path, Mode mode) : path_(std::move(path)) {
  if (mode == Mode::ReadOnly) {
    hid_t id = checked(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), path_, "open as an HDF5 file");
    file_ = Hdf5Handle(id, H5Fclose);
    return;
  }
  Hdf5Handle fapl(checked(H5Pcreate(H5P_FILE_ACCESS), path_, "create file-access properties"), H5Pclose);
  // The 1.8 format is the oldest with checksummed metadata; h5py and HDF5 >= 1.8 read it.
  checked_status(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST), path_, "set the file format");
  hid_t id = checked(H5Fcreate(path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), path_, "create the HDF5 file");
  file_ = Hdf5Handle(id, H5Fclose);
}

Hdf5File Hdf5File::create(const std::string& path) { return Hdf5File(path, Mode::Create); }

Hdf5File Hdf5File::open_read_only(const std::string& path) { return Hdf5File(path, Mode::ReadOnly); }

std::unique_ptr<Hdf5File> Hdf5File::open_read_only_unique(const std::string& path) {
  return std::unique_ptr<Hdf5File>(new Hdf5File(path, Mode::ReadOnly));
}

void Hdf5File::close() {
  if (file_.get() < 0) return;
  checked_status(H5Fflush(file_.get(), H5F_SCOPE_LOCAL), path_, "flush the file");
  checked_status(file_.reset(), path_, "close the file");
}

bool Hdf5File::exists(const std::string& object) const {
  if (object.empty() || object == "/") return true;
  // H5Lexists needs each parent to exist, so walk the path one component at a time.
  std::string prefix;
  size_t start = object.front() == '/' ? 1 : 0;
  while (start <= object.size()) {
    size_t end = std::min(object.find('/', start), object.size());
    prefix.append("/").append(object, start, end - start);
    htri_t found = H5Lexists(file_.get(), prefix.c_str(), H5P_DEFAULT);
    checked_status(found, path_, "look up " + prefix);
    if (found == 0) return false;
    start = end + 1;
  }
  return true;
}

Hdf5Handle Hdf5File::open_object(const std::string& object) const {
  hid_t id = H5Oopen(file_.get(), object_name(object).c_str(), H5P_DEFAULT);
  return Hdf5Handle(checked(id, path_, "open " + object_name(object)), H5Oclose);
}

Hdf5Handle Hdf5File::open_or_create(const std::string& group) {
  if (exists(group)) return open_object(group);
  Hdf5Handle lcpl = intermediate_groups(path_);
  hid_t id = H5Gcreate2(file_.get(), group.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT);
  return Hdf5Handle(checked(id, path_, "create group " + group), H5Gclose);
}

std::vector<std::string> Hdf5File::dataset_names(const std::string& group) const {
  Hdf5Handle g = open_object(group);
  std::vector<std::string> names;
  auto visit = [](hid_t parent, const char* name, const H5L_info_t*, void* data) -> herr_t {
    Hdf5Handle object(H5Oopen(parent, name, H5P_DEFAULT), H5Oclose);
    if (object.get() < 0) return -1;
    if (H5Iget_type(object.get()) == H5I_DATASET) static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  checked_status(H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, visit, &names), path_,
                 "list the datasets of " + group);
  return names;
}

void Hdf5File::write_f32(const std::string& dataset, const Shape& shape, const float* values) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  hid_t space_id = shape.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(int(dims.size()), dims.data(), nullptr);
  Hdf5Handle space(checked(space_id, path_, "describe the shape of " + dataset), H5Sclose);
  Hdf5Handle lcpl = intermediate_groups(path_);
  Hdf5Handle dcpl = checksummed_chunks(shape, path_);
  hid_t id = H5Dcreate2(file_.get(), dataset.c_str(), H5T_IEEE_F32LE, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT);
  Hdf5Handle d(checked(id, path_, "create dataset " + dataset), H5Dclose);
  checked_status(H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), path_,
                 "write dataset " + dataset);
}

Shape Hdf5File::dataset_shape(const std::string& dataset) const {
  Hdf5Handle d(checked(H5Dopen2(file_.get(), dataset.c_str(), H5P_DEFAULT), path_, "open dataset " + dataset),
               H5Dclose);
  Hdf5Handle space(checked(H5Dget_space(d.get()), path_, "read the shape of " + dataset), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space.get());
  checked_status(rank, path_, "read the rank of " + dataset);
  std::vector<hsize_t> dims(size_t(rank), 0);
  checked_status(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), path_, "read the shape of " + dataset);
  return Shape(dims.begin(), dims.end());
}

std::vector<float> Hdf5File::read_f32(const std::string& dataset) const {
  Hdf5Handle d(checked(H5Dopen2(file_.get(), dataset.c_str(), H5P_DEFAULT), path_, "open dataset " + dataset),
               H5Dclose);
  Hdf5Handle type(checked(H5Dget_type(d.get()), path_, "read the type of " + dataset), H5Tclose);
  TS_CHECK(H5Tget_class(type.get()) == H5T_FLOAT, path_, ": dataset ", dataset,
           " does not hold floating-point numbers (not a Tessera checkpoint?)");
  std::vector<float> values(size_t(shape_numel(dataset_shape(dataset))));
  checked_status(H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), path_,
                 "read dataset " + dataset);
  return values;
}

std::vector<float> Hdf5File::read_f32_range(const std::string& dataset, int64_t begin, int64_t count) const {
  const Shape shape = dataset_shape(dataset);
  TS_CHECK(shape.size() == 1 && begin >= 0 && count >= 0 && begin + count <= shape[0], path_, ": dataset ", dataset,
           " has shape ", shape, ", which does not hold elements [", begin, ", ", begin + count, ")");
  std::vector<float> values(size_t(count), 0.0f);
  if (count == 0) return values;
  Hdf5Handle d(checked(H5Dopen2(file_.get(), dataset.c_str(), H5P_DEFAULT), path_, "open dataset " + dataset),
               H5Dclose);
  Hdf5Handle file_space(checked(H5Dget_space(d.get()), path_, "read the shape of " + dataset), H5Sclose);
  const hsize_t start = hsize_t(begin), extent = hsize_t(count);
  checked_status(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &start, nullptr, &extent, nullptr), path_,
                 "select elements of " + dataset);
  Hdf5Handle memory_space(checked(H5Screate_simple(1, &extent, nullptr), path_, "describe a slice of " + dataset),
                          H5Sclose);
  checked_status(H5Dread(d.get(), H5T_NATIVE_FLOAT, memory_space.get(), file_space.get(), H5P_DEFAULT, values.data()),
                 path_, "read dataset " + dataset);
  return values;
}

void Hdf5File::write_attribute(const std::string& object, const std::string& name, hid_t type, const void* value) {
  Hdf5Handle target = open_or_create(object);
  std::string what = "attribute " + name + " of " + object_name(object);
  htri_t present = H5Aexists(target.get(), name.c_str());
  checked_status(present, path_, "look up " + what);
  if (present > 0) checked_status(H5Adelete(target.get(), name.c_str()), path_, "replace " + what);
  Hdf5Handle space(checked(H5Screate(H5S_SCALAR), path_, "describe " + what), H5Sclose);
  hid_t id = H5Acreate2(target.get(), name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT);
  Hdf5Handle attribute(checked(id, path_, "create " + what), H5Aclose);
  checked_status(H5Awrite(attribute.get(), type, value), path_, "write " + what);
}

void Hdf5File::read_attribute(const std::string& object, const std::string& name, hid_t type, void* value) const {
  Hdf5Handle target = open_object(object);
  std::string what = "attribute " + name + " of " + object_name(object);
  hid_t id = H5Aopen(target.get(), name.c_str(), H5P_DEFAULT);
  Hdf5Handle attribute(checked(id, path_, "open " + what), H5Aclose);
  checked_status(H5Aread(attribute.get(), type, value), path_, "read " + what);
}

void Hdf5File::write_int_attribute(const std::string& object, const std::string& name, int64_t value) {
  write_attribute(object, name, H5T_NATIVE_INT64, &value);
}

void Hdf5File::write_uint_attribute(const std::string& object, const std::string& name, uint64_t value) {
  write_attribute(object, name, H5T_NATIVE_UINT64, &value);
}

void Hdf5File::write_double_attribute(const std::string& object, const std::string& name, double value) {
  write_attribute(object, name, H5T_NATIVE_DOUBLE, &value);
}

void Hdf5File::write_string_attribute(const std::string& object, const std::string& name, const std::string& value) {
  Hdf5Handle type(checked(H5Tcopy(H5T_C_S1), path_, "make a string type"), H5Tclose);
  checked_status(H5Tset_size(type.get(), std::max<size_t>(1, value.size())), path_, "size a string type");
  checked_status(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), path_, "pad a string type");
  checked_status(H5Tset_cset(type.get(), H5T_CSET_UTF8), path_, "set a string type's character set");
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  write_attribute(object, name, type.get(), padded.data());
}

bool Hdf5File::has_attribute(const std::string& object, const std::string& name) const {
  if (!exists(object)) return false;
  htri_t present = H5Aexists(open_object(object).get(), name.c_str());
  checked_status(present, path_, "look up attribute " + name + " of " + object_name(object));
  return present > 0;
}

int64_t Hdf5File::read_int_attribute(const std::string& object, const std::string& name) const {
  int64_t value = 0;
  read_attribute(object, name, H5T_NATIVE_INT64, &value);
  return value;
}

double Hdf5File::read_double_attribute(const std::string& object, const std::string& name) const {
  double value = 0.0;
  read_attribute(object, name, H5T_NATIVE_DOUBLE, &value);
  return value;
}

uint64_t Hdf5File::read_uint_attribute(const std::string& object, const std::string& name) const {
  uint64_t value = 0;
  read_attribute(object, name, H5T_NATIVE_UINT64, &value);
  return value;
}

std::string Hdf5File::read_string_attribute(const std::string& object, const std::string& name) const {
  Hdf5Handle target = open_object(object);
  std::string what = "attribute " + name + " of " + object_name(object);
  Hdf5Handle attribute(checked(H5Aopen(target.get(), name.c_str(), H5P_DEFAULT), path_, "open " + what), H5Aclose);
  Hdf5Handle type(checked(H5Aget_type(attribute.get()), path_, "read the type of " + what), H5Tclose);
  TS_CHECK(H5Tget_class(type.get()) == H5T_STRING && H5Tis_variable_str(type.get()) == 0, path_, ": ", what,
           " is not a fixed-length string (not a Tessera checkpoint?)");
  std::string value(H5Tget_size(type.get()), '\0');
  checked_status(H5Aread(attribute.get(), type.get(), value.data()), path_, "read " + what);
  value.resize(value.find_last_not_of('\0') + 1);  // npos + 1 == 0: an all-padding string is empty
  return value;
}

}  // namespace tessera
