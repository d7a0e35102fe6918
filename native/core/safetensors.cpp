#include "core/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <random>
#include <set>

#include "core/error.h"
#include "core/half.h"
#include "core/json.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; a big-endian host needs byte swaps here");

namespace reca {

// ---------------------------------------------------------------- dtypes

namespace {
struct DtypeInfo {
  const char* name;
  size_t size;
};
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2},  {"BF16", 2},    {"I32", 4},     {"U32", 4},
    {"F32", 4},  {"F64", 8}, {"I64", 8},  {"U64", 8},
};
constexpr size_t kNumDtypes = sizeof kDtypes / sizeof kDtypes[0];
static_assert(kNumDtypes == static_cast<size_t>(StDtype::U64) + 1, "dtype table out of step");

bool is_float_storage(StDtype dt) {
  return dt == StDtype::F32 || dt == StDtype::F16 || dt == StDtype::BF16;
}
}  // namespace

const char* st_dtype_name(StDtype dt) { return kDtypes[static_cast<size_t>(dt)].name; }
size_t st_dtype_size(StDtype dt) { return kDtypes[static_cast<size_t>(dt)].size; }

bool st_dtype_from_name(const std::string& name, StDtype* out) {
  for (size_t i = 0; i < kNumDtypes; ++i)
    if (name == kDtypes[i].name) {
      *out = static_cast<StDtype>(i);
      return true;
    }
  return false;
}

std::string st_shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// ---------------------------------------------------------------- names

namespace {

// C0 controls, DEL and the C1 controls (U+0080..U+009F, encoded C2 80..C2 9F).
bool has_control_chars(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) return true;
    if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9f) return true;
  }
  return false;
}

// For error messages: a name cut to a readable length, controls shown as '?'.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 120; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  if (s.size() > 120) out += "...";
  return out;
}

}  // namespace

// ---------------------------------------------------------------- header parser

namespace {

// The header's schema read straight off the JSON pull reader. Every position
// admits one shape (object of entries / object of strings / string / array of
// integers), so a value of any other shape is rejected at its first byte:
// nesting never exceeds three levels and nothing recurses. Every failure is
// E_CHECKPOINT with the byte offset in the file.
struct RawEntry {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

class HeaderParser {
 public:
  HeaderParser(const std::string& label, const uint8_t* p, uint64_t n)
      : r_(p, static_cast<size_t>(n), ErrorCode::Checkpoint,
           "checkpoint '" + label + "': invalid safetensors header", 8) {}

  void parse(std::vector<RawEntry>& entries, std::map<std::string, std::string>& metadata) {
    if (r_.peek() != '{') r_.fail("the header does not start with '{'");
    bool have_metadata = false;
    std::map<std::string, size_t> seen;  // tensor names -> index, for duplicates
    r_.read_object([&](std::string&& key) {
      if (key == "__metadata__") {
        if (have_metadata) r_.fail("duplicate key \"__metadata__\"");
        have_metadata = true;
        parse_metadata(metadata);
        return;
      }
      if (!seen.emplace(key, entries.size()).second)
        r_.fail("duplicate tensor name '" + printable(key) + "'");
      entries.emplace_back();
      entries.back().name = std::move(key);
      parse_entry(entries.back());
    });
    r_.skip_ws();
    if (!r_.at_end())
      r_.fail("unexpected bytes after the header object (only whitespace may pad it)");
  }

 private:
  void parse_metadata(std::map<std::string, std::string>& metadata) {
    if (r_.peek() != '{') r_.fail("\"__metadata__\" must be an object, found " + r_.describe());
    r_.read_object([&](std::string&& key) {
      if (r_.peek() != '"')
        r_.fail("metadata value for \"" + printable(key) + "\" must be a string, found " +
                r_.describe());
      std::string value = r_.read_string();
      if (!metadata.emplace(std::move(key), std::move(value)).second)
        r_.fail("duplicate metadata key");
    });
  }

  void parse_entry(RawEntry& e) {
    const std::string tname = "tensor '" + printable(e.name) + "'";
    if (r_.peek() != '{') r_.fail(tname + " must be an object, found " + r_.describe());
    bool have_dtype = false, have_shape = false, have_offsets = false;
    r_.read_object([&](std::string&& key) {
      if (key == "dtype") {
        if (have_dtype) r_.fail(tname + ": duplicate key \"dtype\"");
        have_dtype = true;
        if (r_.peek() != '"') r_.fail(tname + ": dtype must be a string, found " + r_.describe());
        const std::string name = r_.read_string();
        if (!st_dtype_from_name(name, &e.dtype))
          r_.fail(tname + ": unsupported dtype \"" + printable(name) + "\"");
      } else if (key == "shape") {
        if (have_shape) r_.fail(tname + ": duplicate key \"shape\"");
        have_shape = true;
        r_.read_array("shape", [&] {
          const uint64_t d = r_.read_uint("shape");
          if (d > static_cast<uint64_t>(INT64_MAX)) r_.fail(tname + ": shape dimension too large");
          if (e.shape.size() >= SafetensorsFile::kMaxRank)
            r_.fail(tname + ": more than " + std::to_string(SafetensorsFile::kMaxRank) +
                    " dimensions");
          e.shape.push_back(static_cast<int64_t>(d));
        });
      } else if (key == "data_offsets") {
        if (have_offsets) r_.fail(tname + ": duplicate key \"data_offsets\"");
        have_offsets = true;
        int count = 0;
        r_.read_array("data_offsets", [&] {
          const uint64_t v = r_.read_uint("data_offsets");
          if (count == 0) e.begin = v;
          else if (count == 1) e.end = v;
          else r_.fail(tname + ": data_offsets must hold exactly two integers");
          ++count;
        });
        if (count != 2) r_.fail(tname + ": data_offsets must hold exactly two integers");
      } else {
        r_.fail(tname + ": unknown key \"" + printable(key) + "\"");
      }
    });
    if (!have_dtype) r_.fail(tname + " has no dtype");
    if (!have_shape) r_.fail(tname + " has no shape");
    if (!have_offsets) r_.fail(tname + " has no data_offsets");
  }

  JsonReader r_;
};

[[noreturn]] void bad_file(const std::string& label, const std::string& what) {
  fail(ErrorCode::Checkpoint, "checkpoint '%s': %s", label.c_str(), what.c_str());
}

std::string tname(const std::string& name) { return "tensor '" + printable(name) + "'"; }

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// ---------------------------------------------------------------- file I/O

[[noreturn]] void io_fail(const char* what, const std::string& path, int err) {
  fail(ErrorCode::Io, "%s '%s': %s", what, path.c_str(), std::strerror(err));
}

// Reads up to n bytes at offset; returns the count (short only at end of file).
size_t pread_full(int fd, void* buf, size_t n, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    const size_t chunk = std::min<size_t>(n - done, size_t(1) << 30);
    const ssize_t r = ::pread(fd, static_cast<uint8_t*>(buf) + done, chunk,
                              static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      io_fail("cannot read", path, errno);
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return done;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

// ---------------------------------------------------------------- SafetensorsFile

SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

// Parses and validates the header against `buffer_avail` bytes of data that
// follow it. On success the entries are sorted by name and buffer_ is empty,
// its required size being the largest end offset (see buffer_need below).
SafetensorsFile SafetensorsFile::parse(const std::string& label, const uint8_t* header,
                                       uint64_t header_len, uint64_t buffer_avail) {
  std::vector<RawEntry> raw;
  SafetensorsFile f;
  f.label_ = label;
  HeaderParser(label, header, header_len).parse(raw, f.metadata_);

  // Sizes, with overflow checks.
  f.entries_.reserve(raw.size());
  for (RawEntry& r : raw) {
    uint64_t numel = 1;
    for (const int64_t d : r.shape)
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel) ||
          numel > static_cast<uint64_t>(INT64_MAX))
        bad_file(label, tname(r.name) + ": shape " + st_shape_str(r.shape) + " overflows");
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(st_dtype_size(r.dtype)), &nbytes))
      bad_file(label, tname(r.name) + ": shape " + st_shape_str(r.shape) + " of " +
                          st_dtype_name(r.dtype) + " overflows");
    if (r.end < r.begin)
      bad_file(label, tname(r.name) + ": data_offsets [" + std::to_string(r.begin) + ", " +
                          std::to_string(r.end) + "] end before they begin");
    if (r.end - r.begin != nbytes)
      bad_file(label, tname(r.name) + ": data_offsets [" + std::to_string(r.begin) + ", " +
                          std::to_string(r.end) + "] hold " + std::to_string(r.end - r.begin) +
                          " bytes, shape " + st_shape_str(r.shape) + " of " +
                          st_dtype_name(r.dtype) + " needs " + std::to_string(nbytes));
    SafetensorsEntry e;
    e.name = std::move(r.name);
    e.dtype = r.dtype;
    e.shape = std::move(r.shape);
    e.numel = static_cast<int64_t>(numel);
    e.offset = r.begin;
    e.nbytes = nbytes;
    e.data = nullptr;
    f.entries_.push_back(std::move(e));
  }

  // Tiling: in offset order every tensor starts where the previous one ended.
  std::vector<size_t> order(f.entries_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const SafetensorsEntry &x = f.entries_[a], &y = f.entries_[b];
    if (x.offset != y.offset) return x.offset < y.offset;
    if (x.nbytes != y.nbytes) return x.nbytes < y.nbytes;
    return x.name < y.name;
  });
  uint64_t pos = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const size_t i : order) {
    const SafetensorsEntry& e = f.entries_[i];
    if (e.offset != pos) {
      const std::string where = "[" + std::to_string(e.offset) + ", " +
                                std::to_string(e.offset + e.nbytes) + ")";
      if (e.offset > pos)
        bad_file(label, tname(e.name) + " at " + where + " leaves a gap after byte " +
                            std::to_string(pos) +
                            (prev ? " (end of " + tname(prev->name) + ")" : std::string()));
      bad_file(label, tname(e.name) + " at " + where + " overlaps " + tname(prev->name));
    }
    pos += e.nbytes;  // cannot overflow: offset + nbytes == end, an u64
    prev = &e;
  }
  const uint64_t buffer_need = pos;

  if (buffer_avail < buffer_need) {
    for (const size_t i : order) {
      const SafetensorsEntry& e = f.entries_[i];
      if (e.offset + e.nbytes > buffer_avail)
        bad_file(label, "file is truncated: " + tname(e.name) + " needs bytes [" +
                            std::to_string(e.offset) + ", " + std::to_string(e.offset + e.nbytes) +
                            ") of the data buffer, the file holds " + std::to_string(buffer_avail));
    }
  }
  if (buffer_avail > buffer_need)
    bad_file(label, std::to_string(buffer_avail - buffer_need) +
                        " unexpected bytes after the last tensor (data buffer is " +
                        std::to_string(buffer_need) + " bytes)");

  std::sort(f.entries_.begin(), f.entries_.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.name < b.name; });
  f.names_.reserve(f.entries_.size());
  for (const SafetensorsEntry& e : f.entries_) f.names_.push_back(e.name);
  return f;
}

namespace {
// Checks the length field against the bytes there are; returns N.
uint64_t checked_header_len(const std::string& label, const uint8_t* first8, uint64_t size) {
  if (size < 8)
    bad_file(label, "file is " + std::to_string(size) +
                        " bytes, too short for a safetensors header length");
  const uint64_t n = read_u64_le(first8);
  if (n > SafetensorsFile::kMaxHeaderBytes)
    bad_file(label, "header length " + std::to_string(n) + " exceeds the " +
                        std::to_string(SafetensorsFile::kMaxHeaderBytes) +
                        "-byte limit (not a safetensors file?)");
  if (n > size - 8)
    bad_file(label, "file is truncated: header length " + std::to_string(n) + " but only " +
                        std::to_string(size - 8) + " bytes follow the length field");
  return n;
}

void attach_data(std::vector<SafetensorsEntry>& entries, const std::vector<uint8_t>& buffer) {
  for (SafetensorsEntry& e : entries) e.data = buffer.data() + e.offset;
}
}  // namespace

SafetensorsFile SafetensorsFile::from_memory(const void* data, size_t size, const std::string& label) {
  RECA_CHECK(data != nullptr || size == 0, InvalidArgument, "safetensors from_memory: null data");
  try {
    const auto* p = static_cast<const uint8_t*>(data);
    const uint64_t n = checked_header_len(label, p, size);
    SafetensorsFile f = parse(label, p + 8, n, size - 8 - n);
    f.buffer_.assign(p + 8 + n, p + size);
    attach_data(f.entries_, f.buffer_);
    return f;
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "checkpoint '%s': out of memory while loading", label.c_str());
  }
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  Fd fd;
  // O_NONBLOCK: a FIFO at `path` must not hang the open (no effect on regular files).
  do fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  while (fd.fd < 0 && errno == EINTR);
  if (fd.fd < 0) io_fail("cannot open checkpoint", path, errno);
  struct stat st;
  if (::fstat(fd.fd, &st) != 0) io_fail("cannot stat checkpoint", path, errno);
  if (S_ISDIR(st.st_mode)) io_fail("cannot read checkpoint", path, EISDIR);
  if (!S_ISREG(st.st_mode))
    fail(ErrorCode::Io, "cannot read checkpoint '%s': not a regular file", path.c_str());
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  try {
    uint8_t first8[8] = {};
    const size_t got8 = pread_full(fd.fd, first8, size < 8 ? size : 8, 0, path);
    const uint64_t n = checked_header_len(path, first8, got8 < 8 ? got8 : size);
    std::vector<uint8_t> header(n);
    if (pread_full(fd.fd, header.data(), n, 8, path) != n)
      bad_file(path, "file is truncated inside the header (it shrank while being read)");
    SafetensorsFile f = parse(path, header.data(), n, size - 8 - n);
    header = std::vector<uint8_t>();
    const uint64_t need = size - 8 - n;  // == the buffer size, validated by parse
    f.buffer_.resize(need);
    const size_t got = pread_full(fd.fd, f.buffer_.data(), need, 8 + n, path);
    if (got != need) {  // the file shrank after fstat: name the first tensor cut
      for (const SafetensorsEntry& e : f.entries_)
        if (e.offset + e.nbytes > got && e.nbytes > 0)
          bad_file(path, "file is truncated: " + tname(e.name) + " needs bytes [" +
                             std::to_string(e.offset) + ", " + std::to_string(e.offset + e.nbytes) +
                             ") of the data buffer, the file holds " + std::to_string(got));
      bad_file(path, "file is truncated");
    }
    attach_data(f.entries_, f.buffer_);
    return f;
  } catch (const std::bad_alloc&) {
    fail(ErrorCode::OutOfMemory, "checkpoint '%s': out of memory while loading", path.c_str());
  }
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const SafetensorsEntry& e, const std::string& n) { return e.name < n; });
  return it != entries_.end() && it->name == name ? &*it : nullptr;
}

const SafetensorsEntry& SafetensorsFile::get(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) bad_file(label_, "no " + tname(name));
  return *e;
}

const SafetensorsEntry& SafetensorsFile::checked(const std::string& name,
                                                 const std::vector<int64_t>& shape,
                                                 bool (*dtype_ok)(StDtype),
                                                 const char* want_dtype) const {
  const SafetensorsEntry& e = get(name);
  if (e.shape != shape || !dtype_ok(e.dtype))
    bad_file(label_, tname(name) + " is " + st_shape_str(e.shape) + " " + st_dtype_name(e.dtype) +
                         ", expected " + st_shape_str(shape) + " " + want_dtype);
  return e;
}

void SafetensorsFile::read_f32(const std::string& name, const std::vector<int64_t>& expected_shape,
                               float* out) const {
  const SafetensorsEntry& e = checked(name, expected_shape, is_float_storage, "F32|F16|BF16");
  RECA_CHECK(out != nullptr || e.numel == 0, InvalidArgument, "read_f32('%s'): null output",
             printable(name).c_str());
  const uint8_t* src = e.data;
  const int64_t n = e.numel;
  if (e.dtype == StDtype::F32) {
    if (n) std::memcpy(out, src, static_cast<size_t>(e.nbytes));
  } else {
    const bool half = e.dtype == StDtype::F16;
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] = half ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
}

void SafetensorsFile::read_raw(const std::string& name, StDtype expected_dtype,
                               const std::vector<int64_t>& expected_shape, void* out) const {
  const SafetensorsEntry& e = get(name);
  if (e.shape != expected_shape || e.dtype != expected_dtype)
    bad_file(label_, tname(name) + " is " + st_shape_str(e.shape) + " " + st_dtype_name(e.dtype) +
                         ", expected " + st_shape_str(expected_shape) + " " +
                         st_dtype_name(expected_dtype));
  RECA_CHECK(out != nullptr || e.nbytes == 0, InvalidArgument, "read_raw('%s'): null output",
             printable(name).c_str());
  if (e.nbytes) std::memcpy(out, e.data, static_cast<size_t>(e.nbytes));
}

// ---------------------------------------------------------------- SafetensorsWriter

struct SafetensorsWriter::Item {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;
  uint64_t nbytes;
  std::vector<uint8_t> owned;
  const uint8_t* data;
};

SafetensorsWriter::SafetensorsWriter() = default;
SafetensorsWriter::~SafetensorsWriter() = default;

size_t SafetensorsWriter::size() const { return items_.size(); }

namespace {
uint64_t checked_numel(const std::string& name, const std::vector<int64_t>& shape) {
  uint64_t numel = 1;
  RECA_CHECK(shape.size() <= SafetensorsFile::kMaxRank, InvalidArgument,
             "safetensors: tensor '%s' has %zu dimensions (at most %zu)", printable(name).c_str(),
             shape.size(), SafetensorsFile::kMaxRank);
  for (const int64_t d : shape) {
    RECA_CHECK(d >= 0, InvalidArgument, "safetensors: tensor '%s' has a negative dimension in %s",
               printable(name).c_str(), st_shape_str(shape).c_str());
    RECA_CHECK(!__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel) &&
                   numel <= static_cast<uint64_t>(INT64_MAX),
               InvalidArgument, "safetensors: tensor '%s': shape %s overflows",
               printable(name).c_str(), st_shape_str(shape).c_str());
  }
  return numel;
}
}  // namespace

void SafetensorsWriter::add_item(const std::string& name, StDtype dtype,
                                 const std::vector<int64_t>& shape, const void* data, size_t nbytes,
                                 bool copy) {
  RECA_CHECK(static_cast<size_t>(dtype) < kNumDtypes, InvalidArgument, "safetensors: bad dtype");
  RECA_CHECK(!name.empty(), InvalidArgument, "safetensors: empty tensor name");
  RECA_CHECK(utf8_valid(name), InvalidArgument, "safetensors: tensor name '%s' is not valid UTF-8",
             printable(name).c_str());
  RECA_CHECK(!has_control_chars(name), InvalidArgument,
             "safetensors: tensor name '%s' contains control characters", printable(name).c_str());
  RECA_CHECK(name != "__metadata__", InvalidArgument,
             "safetensors: \"__metadata__\" is reserved, not a tensor name");
  for (const auto& it : items_)
    RECA_CHECK(it->name != name, InvalidArgument, "safetensors: duplicate tensor name '%s'",
               printable(name).c_str());
  const uint64_t numel = checked_numel(name, shape);
  uint64_t want;
  RECA_CHECK(!__builtin_mul_overflow(numel, static_cast<uint64_t>(st_dtype_size(dtype)), &want),
             InvalidArgument, "safetensors: tensor '%s': shape %s overflows",
             printable(name).c_str(), st_shape_str(shape).c_str());
  RECA_CHECK(want == nbytes, InvalidArgument,
             "safetensors: tensor '%s': %zu bytes given, shape %s of %s needs %llu",
             printable(name).c_str(), nbytes, st_shape_str(shape).c_str(), st_dtype_name(dtype),
             static_cast<unsigned long long>(want));
  RECA_CHECK(data != nullptr || nbytes == 0, InvalidArgument,
             "safetensors: tensor '%s': null data", printable(name).c_str());
  auto item = std::make_unique<Item>();
  item->name = name;
  item->dtype = dtype;
  item->shape = shape;
  item->nbytes = nbytes;
  if (copy) {
    const auto* p = static_cast<const uint8_t*>(data);
    if (nbytes) item->owned.assign(p, p + nbytes);
    item->data = item->owned.data();
  } else {
    item->data = static_cast<const uint8_t*>(data);
  }
  items_.push_back(std::move(item));
}

void SafetensorsWriter::add(const std::string& name, StDtype dtype, const std::vector<int64_t>& shape,
                            const void* data, size_t nbytes) {
  add_item(name, dtype, shape, data, nbytes, true);
}

void SafetensorsWriter::add_view(const std::string& name, StDtype dtype,
                                 const std::vector<int64_t>& shape, const void* data, size_t nbytes) {
  add_item(name, dtype, shape, data, nbytes, false);
}

void SafetensorsWriter::add_f32(const std::string& name, const std::vector<int64_t>& shape,
                                const float* data, StDtype storage) {
  RECA_CHECK(is_float_storage(storage), InvalidArgument,
             "safetensors: tensor '%s': float data can be stored as F32, F16 or BF16, not %s",
             printable(name).c_str(),
             static_cast<size_t>(storage) < kNumDtypes ? st_dtype_name(storage) : "?");
  const uint64_t numel = checked_numel(name, shape);
  RECA_CHECK(data != nullptr || numel == 0, InvalidArgument, "safetensors: tensor '%s': null data",
             printable(name).c_str());
  if (storage == StDtype::F32) {
    add_item(name, storage, shape, data, numel * 4, true);
    return;
  }
  RECA_CHECK(numel <= SIZE_MAX / 2, InvalidArgument, "safetensors: tensor '%s' too large",
             printable(name).c_str());
  std::vector<uint8_t> bytes(static_cast<size_t>(numel) * 2);
  const bool half = storage == StDtype::F16;
  for (uint64_t i = 0; i < numel; ++i) {
    const uint16_t h = half ? f32_to_f16(data[i]) : f32_to_bf16(data[i]);
    std::memcpy(bytes.data() + 2 * i, &h, 2);
  }
  add_item(name, storage, shape, bytes.data(), bytes.size(), false);  // validates, then adopt
  items_.back()->owned = std::move(bytes);
  items_.back()->data = items_.back()->owned.data();
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  RECA_CHECK(utf8_valid(key), InvalidArgument, "safetensors: metadata key is not valid UTF-8");
  RECA_CHECK(utf8_valid(value), InvalidArgument,
             "safetensors: metadata value for '%s' is not valid UTF-8", printable(key).c_str());
  metadata_[key] = value;
}

std::vector<const SafetensorsWriter::Item*> SafetensorsWriter::layout() const {
  std::vector<const Item*> order;
  order.reserve(items_.size());
  for (const auto& it : items_) order.push_back(it.get());
  // Descending dtype rank, then name: each tensor starts at a multiple of its
  // element size (the header ends 8-aligned), as the reference writer lays it out.
  std::sort(order.begin(), order.end(), [](const Item* a, const Item* b) {
    if (a->dtype != b->dtype) return a->dtype > b->dtype;
    return a->name < b->name;
  });
  return order;
}

std::string SafetensorsWriter::header() const {
  std::string h = "{";
  bool first = true;
  if (!metadata_.empty()) {
    h += "\"__metadata__\":{";
    for (const auto& kv : metadata_) {
      if (!first) h += ',';
      first = false;
      h += json_quote(kv.first);
      h += ':';
      h += json_quote(kv.second);
    }
    h += '}';
    first = false;
  }
  uint64_t offset = 0;
  for (const Item* it : layout()) {
    if (!first) h += ',';
    first = false;
    h += json_quote(it->name);
    h += ":{\"dtype\":\"";
    h += st_dtype_name(it->dtype);
    h += "\",\"shape\":[";
    for (size_t i = 0; i < it->shape.size(); ++i) {
      if (i) h += ',';
      h += std::to_string(it->shape[i]);
    }
    h += "],\"data_offsets\":[";
    h += std::to_string(offset);
    h += ',';
    offset += it->nbytes;
    h += std::to_string(offset);
    h += "]}";
  }
  h += '}';
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

std::vector<uint8_t> SafetensorsWriter::serialize() const {
  const std::string h = header();
  uint64_t total = 8 + h.size();
  for (const auto& it : items_) total += it->nbytes;
  std::vector<uint8_t> out;
  out.reserve(static_cast<size_t>(total));
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), h.begin(), h.end());
  for (const Item* it : layout()) out.insert(out.end(), it->data, it->data + it->nbytes);
  return out;
}

namespace {

void write_all(int fd, const uint8_t* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      io_fail("cannot write", path, errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

std::string random_suffix() {
  static std::atomic<uint64_t> counter{0};
  uint64_t r = 0;
  try {
    std::random_device rd;
    r = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  } catch (...) {
    // No entropy source: the clock and a counter still make the name unique
    // within this process, and O_EXCL refuses any collision.
  }
  r ^= static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  r ^= counter.fetch_add(1) * 0x9e3779b97f4a7c15ull;
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r));
  return buf;
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Temporaries this process is writing now: a temp with our own pid that is not
// listed here is a dead process's whose pid was reused.
std::mutex g_live_mu;
std::set<std::string> g_live_temps;

struct LiveTemp {
  std::string path;
  explicit LiveTemp(std::string p) : path(std::move(p)) {
    std::lock_guard<std::mutex> lock(g_live_mu);
    g_live_temps.insert(path);
  }
  ~LiveTemp() {
    std::lock_guard<std::mutex> lock(g_live_mu);
    g_live_temps.erase(path);
  }
};

// Removes the temporaries of `path` ("<name>.tmp-<pid>-<16 hex>") left by
// writers that died mid-save (kill -9, power loss): their pid is gone, or it
// is ours and no save of this process owns the file. Best effort: a temp that
// cannot be removed is left for the next save. A writer in another pid
// namespace sharing the directory looks dead; its rename would then fail with
// E_IO rather than publish a partial file.
void remove_stale_temps(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp-";
  DIR* d = ::opendir(parent_dir(path).c_str());
  if (!d) return;
  const pid_t self = ::getpid();
  while (const struct dirent* e = ::readdir(d)) {
    const char* name = e->d_name;
    if (std::strncmp(name, prefix.c_str(), prefix.size()) != 0) continue;
    const char* rest = name + prefix.size();
    char* end = nullptr;
    errno = 0;
    const long pid = std::strtol(rest, &end, 10);
    if (errno || end == rest || pid <= 0 || *end != '-' || std::strlen(end + 1) != 16 ||
        std::strspn(end + 1, "0123456789abcdef") != 16)
      continue;
    const std::string full = (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + name;
    bool stale;
    if (pid == self) {
      std::lock_guard<std::mutex> lock(g_live_mu);
      stale = g_live_temps.count(full) == 0;
    } else {
      stale = ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
    }
    struct stat st;
    if (stale && ::lstat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode)) ::unlink(full.c_str());
  }
  ::closedir(d);
}

}  // namespace

void SafetensorsWriter::write_atomic(const std::string& path) const {
  RECA_CHECK(!path.empty(), InvalidArgument, "safetensors: empty output path");
  RECA_CHECK(path.back() != '/', InvalidArgument, "safetensors: output path '%s' names a directory",
             path.c_str());
  const std::string h = header();
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + random_suffix();
  const LiveTemp live(tmp);
  remove_stale_temps(path);

  int fd;
  do fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) io_fail("cannot create", tmp, errno);
  try {
    // Keep the permissions of the file being replaced.
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) ::fchmod(fd, st.st_mode & 07777);

    // Small pieces are gathered into one staging buffer; big tensors go straight out.
    constexpr size_t kStage = size_t(4) << 20;
    std::vector<uint8_t> stage;
    stage.reserve(kStage);
    auto put = [&](const uint8_t* p, size_t n) {
      if (stage.size() + n > kStage) {
        write_all(fd, stage.data(), stage.size(), tmp);
        stage.clear();
      }
      if (n >= kStage) write_all(fd, p, n, tmp);
      else stage.insert(stage.end(), p, p + n);
    };
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
    put(len, 8);
    put(reinterpret_cast<const uint8_t*>(h.data()), h.size());
    for (const Item* it : layout()) put(it->data, static_cast<size_t>(it->nbytes));
    write_all(fd, stage.data(), stage.size(), tmp);

    if (::fsync(fd) != 0) io_fail("cannot flush", tmp, errno);
    const int c = ::close(fd);
    fd = -1;
    if (c != 0) io_fail("cannot close", tmp, errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      fail(ErrorCode::Io, "cannot rename '%s' to '%s': %s", tmp.c_str(), path.c_str(),
           std::strerror(err));
    }
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }

  // Make the rename itself durable. Filesystems without directory fsync say EINVAL.
  const std::string dir = parent_dir(path);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int err = dfd < 0 ? errno : 0;
  if (dfd >= 0) {
    if (::fsync(dfd) != 0 && errno != EINVAL) err = errno;
    ::close(dfd);
  }
  if (err)
    fail(ErrorCode::Io, "saved '%s', but cannot flush its directory '%s': %s", path.c_str(),
         dir.c_str(), std::strerror(err));
}

}  // namespace reca
