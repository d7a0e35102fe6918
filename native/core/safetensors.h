// Safetensors checkpoints (the Hugging Face format, byte for byte):
//
//   [u64 little-endian N][N bytes of UTF-8 JSON header][data buffer]
//
//   header: {"__metadata__": {"key": "value", ...},            (optional; strings only)
//            "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//   offsets are relative to the buffer start; the tensors tile the buffer with
//   no gap and no overlap; end - begin == numel(shape) · dtype size; data is
//   little-endian, row-major.
//
// Reading validates the whole file before anything is returned (header length,
// strict JSON, dtypes, shapes, overflow, tiling, exact file size), so a
// malformed, truncated or foreign file is an E_CHECKPOINT error, never a crash
// or an out-of-bounds read. Cannot open/read -> E_IO. Caller misuse -> E_INVALID_ARGUMENT.
//
// Writing produces what the reference `safetensors` writer produces: compact
// JSON, "__metadata__" first (keys sorted), then the tensors in data order;
// the header padded with spaces to a multiple of 8 bytes; tensors laid out by
// descending dtype rank (so by descending element size), then by name. Every
// tensor therefore starts at a multiple of its element size, whatever the
// shapes (an odd-length U8 tensor cannot misalign the F32 ones after it), and
// a file with at most one metadata key is byte-identical to the reference
// writer's output for the same tensors. write_atomic() writes a temporary file
// in the target's directory, fsyncs it, renames it over the target and fsyncs
// the directory: a crash or error mid-save leaves the old file whole.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace reca {

// Element types of the format (the sub-byte and complex types are not supported).
// Declared in the format's rank order (increasing alignment); the writer lays
// tensors out by descending rank, then by name.
enum class StDtype : uint8_t {
  BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64,
};

const char* st_dtype_name(StDtype dt);  // "F32", "BF16", ...
size_t st_dtype_size(StDtype dt);       // bytes per element
// Parses a format dtype name; false when unknown.
bool st_dtype_from_name(const std::string& name, StDtype* out);

// "[2, 3]"
std::string st_shape_str(const std::vector<int64_t>& shape);

// One tensor of an open file. `data` points into the file's buffer and is only
// as aligned as the file makes it (files from our writer: to the element size);
// copy with memcpy or use the read_* helpers.
struct SafetensorsEntry {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;
  int64_t numel;
  uint64_t offset;  // byte offset inside the data buffer
  uint64_t nbytes;
  const uint8_t* data;
};

class SafetensorsFile {
 public:
  // Largest header accepted (the reference implementation's limit).
  static constexpr uint64_t kMaxHeaderBytes = 100000000;
  // Largest tensor rank accepted.
  static constexpr size_t kMaxRank = 64;

  // Reads and validates the whole file. E_IO when it cannot be opened or
  // read, E_CHECKPOINT when it is not a valid safetensors file (the message
  // names the file, and the tensor when one is at fault).
  static SafetensorsFile open(const std::string& path);
  // Same validation over bytes in memory (copied); `label` names the source
  // in error messages.
  static SafetensorsFile from_memory(const void* data, size_t size,
                                     const std::string& label = "<memory>");

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& label() const { return label_; }
  // Tensor names, sorted (byte order).
  const std::vector<std::string>& names() const { return names_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when absent.
  const SafetensorsEntry* find(const std::string& name) const;
  // E_CHECKPOINT naming the tensor and the file when absent.
  const SafetensorsEntry& get(const std::string& name) const;
  size_t size() const { return entries_.size(); }
  // Size of the data buffer in bytes.
  uint64_t buffer_bytes() const { return buffer_.size(); }

  // Converts tensor `name` (F32, F16 or BF16) to float into out[numel].
  // E_CHECKPOINT (naming the tensor, expected vs found) when it is missing,
  // its shape differs from expected_shape, or its dtype is not one of those.
  void read_f32(const std::string& name, const std::vector<int64_t>& expected_shape,
                float* out) const;
  // Copies tensor `name`'s bytes into out (numel · dtype size bytes) after
  // checking that its dtype and shape are exactly the expected ones.
  void read_raw(const std::string& name, StDtype expected_dtype,
                const std::vector<int64_t>& expected_shape, void* out) const;

 private:
  SafetensorsFile() = default;
  static SafetensorsFile parse(const std::string& label, const uint8_t* header, uint64_t header_len,
                               uint64_t buffer_avail);
  const SafetensorsEntry& checked(const std::string& name, const std::vector<int64_t>& shape,
                                  bool (*dtype_ok)(StDtype), const char* want_dtype) const;

  std::string label_;
  std::vector<SafetensorsEntry> entries_;  // sorted by name
  std::vector<std::string> names_;
  std::map<std::string, std::string> metadata_;
  std::vector<uint8_t> buffer_;
};

class SafetensorsWriter {
 public:
  SafetensorsWriter();
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Adds a tensor, copying its nbytes bytes (must equal numel(shape) · dtype
  // size). E_INVALID_ARGUMENT for an empty or duplicate name, "__metadata__",
  // a name that is not UTF-8 or holds control characters, a negative dim, an
  // overflowing shape, a size mismatch, or null data with nbytes > 0.
  void add(const std::string& name, StDtype dtype, const std::vector<int64_t>& shape,
           const void* data, size_t nbytes);
  // As add(), without copying: data must stay valid and unchanged until the
  // last serialize()/write_atomic() call.
  void add_view(const std::string& name, StDtype dtype, const std::vector<int64_t>& shape,
                const void* data, size_t nbytes);
  // Adds float data stored as `storage` (F32, F16 or BF16; round to nearest even).
  void add_f32(const std::string& name, const std::vector<int64_t>& shape, const float* data,
               StDtype storage = StDtype::F32);
  // Sets (or replaces) a metadata entry. E_INVALID_ARGUMENT when key or value
  // is not valid UTF-8.
  void set_metadata(const std::string& key, const std::string& value);

  size_t size() const;
  // The complete file.
  std::vector<uint8_t> serialize() const;
  // Writes the file to `path` atomically (see the top of this header): the
  // temporary is `path` + ".tmp-<pid>-<random>", created exclusively (and
  // temporaries of `path` left by dead processes, e.g. killed mid-save, are
  // removed first, so crashes do not pile them up); the
  // replaced file's permission bits are kept; a symlink at `path` is replaced
  // by the file, not followed. E_IO (with the OS error) on any failure; the
  // temporary is removed and whatever was at `path` is left untouched. (Only
  // a failure to flush the directory after the rename leaves the new file in
  // place; the message says so.)
  void write_atomic(const std::string& path) const;

 private:
  struct Item;
  void add_item(const std::string& name, StDtype dtype, const std::vector<int64_t>& shape,
                const void* data, size_t nbytes, bool copy);
  std::string header() const;  // padded JSON header; fixes the layout
  std::vector<const Item*> layout() const;

  std::vector<std::unique_ptr<Item>> items_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace reca
