// Safetensors reader/writer and the f16/bf16 conversions: round trips, a
// byte-exact golden file, the reference writer's own test vectors, every
// truncation point, seeded header mutations, hand-made malformed headers, and
// atomic writes that fail halfway.
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cfloat>
#include <cstring>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/half.h"
#include "core/safetensors.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

namespace {

using Bytes = std::vector<uint8_t>;

Bytes le64(uint64_t n) {
  Bytes b(8);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(n >> (8 * i));
  return b;
}

// length field + header JSON (unpadded, as given) + data buffer
Bytes make_file(const std::string& header, const Bytes& buffer) {
  Bytes f(8 + header.size() + buffer.size());
  const Bytes n = le64(header.size());
  std::memcpy(f.data(), n.data(), 8);
  if (!header.empty()) std::memcpy(f.data() + 8, header.data(), header.size());
  if (!buffer.empty()) std::memcpy(f.data() + 8 + header.size(), buffer.data(), buffer.size());
  return f;
}

// Runs fn and returns the reca::Error code it threw; anything else is a failure.
enum class Outcome { Ok, Threw, Foreign };
Outcome run_catching(const std::function<void()>& fn, ErrorCode* code, std::string* msg) {
  try {
    fn();
    return Outcome::Ok;
  } catch (const Error& e) {
    if (code) *code = e.code();
    if (msg) *msg = e.what();
    return Outcome::Threw;
  } catch (const std::exception& e) {
    if (msg) *msg = e.what();
    return Outcome::Foreign;
  }
}

// Expects fn to throw reca::Error with `want`; when `needle` is given the
// message must contain it.
void expect_error(ErrorCode want, const std::function<void()>& fn, const std::string& what,
                  const std::string& needle = "") {
  ErrorCode code = ErrorCode::Internal;
  std::string msg;
  const Outcome o = run_catching(fn, &code, &msg);
  if (o == Outcome::Ok) return report_failure(what + ": no error thrown");
  if (o == Outcome::Foreign) return report_failure(what + ": threw a non-reca exception: " + msg);
  if (code != want)
    return report_failure(what + ": threw " + error_code_name(code) + " (want " +
                          error_code_name(want) + "): " + msg);
  if (!needle.empty() && msg.find(needle) == std::string::npos)
    report_failure(what + ": message lacks \"" + needle + "\": " + msg);
}

void expect_bad_header(const std::string& header, const Bytes& buffer, const std::string& what,
                       const std::string& needle = "") {
  const Bytes f = make_file(header, buffer);
  expect_error(ErrorCode::Checkpoint, [&] { SafetensorsFile::from_memory(f.data(), f.size()); },
               what, needle);
}

void expect_good_header(const std::string& header, const Bytes& buffer, const std::string& what) {
  const Bytes f = make_file(header, buffer);
  std::string msg;
  if (run_catching([&] { SafetensorsFile::from_memory(f.data(), f.size()); }, nullptr, &msg) !=
      Outcome::Ok)
    report_failure(what + ": rejected a valid file: " + msg);
}

Bytes random_bytes(Rand& rng, size_t n) {
  Bytes b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng.index(256));
  return b;
}

// A scratch directory, removed (one level deep) at the end.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/reca-st-XXXXXX";
    const char* p = mkdtemp(tmpl);
    path = p ? p : "";
  }
  ~TempDir() { remove_tree(path); }
  static void remove_tree(const std::string& p) {
    if (DIR* d = opendir(p.c_str())) {
      while (dirent* e = readdir(d)) {
        const std::string n = e->d_name;
        if (n == "." || n == "..") continue;
        const std::string c = p + "/" + n;
        struct stat st;
        if (lstat(c.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(c);
        else unlink(c.c_str());
      }
      closedir(d);
    }
    rmdir(p.c_str());
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    if (DIR* d = opendir(path.c_str())) {
      while (dirent* e = readdir(d)) {
        const std::string n = e->d_name;
        if (n != "." && n != "..") out.push_back(n);
      }
      closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
  }
};

Bytes read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void write_file_bytes(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// After a successful parse every entry must lie inside the buffer, and every
// accessor must work on it.
void check_parsed_consistent(const SafetensorsFile& f, const std::string& what) {
  uint64_t total = 0;
  for (const std::string& n : f.names()) {
    const SafetensorsEntry* e = f.find(n);
    if (!e) return report_failure(what + ": names() lists a tensor find() misses");
    if (e->offset + e->nbytes > f.buffer_bytes() || e->offset + e->nbytes < e->offset)
      return report_failure(what + ": entry outside the buffer");
    total += e->nbytes;
    Bytes raw(e->nbytes + 1);
    f.read_raw(n, e->dtype, e->shape, raw.data());
    if (e->dtype == StDtype::F32 || e->dtype == StDtype::F16 || e->dtype == StDtype::BF16) {
      std::vector<float> v(static_cast<size_t>(e->numel) + 1);
      f.read_f32(n, e->shape, v.data());
    }
  }
  if (total != f.buffer_bytes()) report_failure(what + ": tensors do not tile the buffer");
}

// The small valid file that the truncation and mutation tests start from.
Bytes small_valid_file() {
  SafetensorsWriter w;
  const float a[6] = {1, -2, 3.5f, 0, -0.25f, 8};
  w.add_f32("layer.weight", {2, 3}, a);
  w.add_f32("layer.bias", {3}, a, StDtype::BF16);
  const uint8_t m[5] = {1, 0, 1, 1, 0};
  w.add("mask", StDtype::U8, {5}, m, 5);
  const int32_t t[2] = {-7, 300};
  w.add("text", StDtype::I32, {1, 2}, t, 8);
  w.set_metadata("reca.step", "12");
  w.set_metadata("note", "caf\xc3\xa9 \"q\"\n");
  return w.serialize();
}

#if defined(__FLT16_MAX__)
uint16_t f16_oracle(float f) {  // the compiler's own (libgcc) conversion
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}
#endif

// Nearest of the two bf16 neighbours of f (finite f), ties to even, in double.
uint16_t bf16_reference(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t sign = x & 0x80000000u, a = x & 0x7fffffffu;
  const uint32_t lo = a >> 16, hi = lo + 1;
  const double v = bits_float(a), dl = v - bits_float(lo << 16);
  const double vh = hi == 0x7f80u ? std::ldexp(1.0, 128) : static_cast<double>(bits_float(hi << 16));
  const double dh = vh - v;
  const uint32_t pick = dl < dh ? lo : dh < dl ? hi : ((lo & 1u) ? hi : lo);
  return static_cast<uint16_t>((sign >> 16) | pick);
}

}  // namespace

// ---------------------------------------------------------------- half.h

RECA_TEST(safetensors_half_f16_exhaustive) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    const uint32_t e = (h >> 10) & 31, m = h & 1023;
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 31 && m != 0) {
      // NaN: stays NaN, same sign, payload kept; back to f16 it only gains the quiet bit.
      const uint32_t fb = float_bits(f);
      if (!std::isnan(f) || (fb >> 31) != (h >> 15) || ((fb >> 13) & 1023) != m ||
          f32_to_f16(f) != (h | 0x200u))
        ++bad;
      continue;
    }
    const double want = e == 31 ? sign * HUGE_VAL
                        : e == 0 ? sign * std::ldexp(static_cast<double>(m), -24)
                                 : sign * std::ldexp(1.0 + m / 1024.0, static_cast<int>(e) - 15);
    if (static_cast<double>(f) != want || std::signbit(f) != (sign < 0)) ++bad;
    if (f32_to_f16(f) != h) ++bad;  // every non-NaN f16 round-trips exactly, -0 included
#if defined(__FLT16_MAX__)
    if (f16_oracle(f) != h) ++bad;
#endif
  }
  expect_true(bad == 0, "f16 <-> f32 over all 65536 patterns: " + std::to_string(bad) + " mismatches");

  // Ties to even at every midpoint between adjacent positive finite f16
  // values (exact in float), and one float ulp either side goes to the nearer.
  bad = 0;
  for (uint32_t h = 0; h < 0x7bff + 1; ++h) {
    const double lo = f16_to_f32(static_cast<uint16_t>(h));
    const double hi = h == 0x7bff ? 65536.0 : f16_to_f32(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((lo + hi) / 2);
    if (static_cast<double>(mid) != (lo + hi) / 2) ++bad;
    const uint16_t even = static_cast<uint16_t>((h & 1) ? h + 1 : h);  // 0x7c00 (inf) above 0x7bff
    const uint16_t got = f32_to_f16(mid);
    const uint16_t below = f32_to_f16(std::nextafter(mid, 0.0f));
    const uint16_t above = f32_to_f16(std::nextafter(mid, HUGE_VALF));
    if (got != even || below != h || above != h + 1) ++bad;
    if (f32_to_f16(-mid) != (0x8000u | even)) ++bad;
  }
  expect_true(bad == 0, "f16 ties-to-even at all midpoints: " + std::to_string(bad) + " mismatches");

  // Specials and the edges of the range.
  expect_true(f32_to_f16(HUGE_VALF) == 0x7c00 && f32_to_f16(-HUGE_VALF) == 0xfc00, "f16 inf");
  expect_true(f32_to_f16(FLT_MAX) == 0x7c00 && f32_to_f16(1e6f) == 0x7c00, "f16 overflow -> inf");
  expect_true(f32_to_f16(65519.996f) == 0x7bff, "f16 just below the overflow tie");
  expect_true(f32_to_f16(std::ldexp(1.0f, -25)) == 0 &&
                  f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 1,
              "f16 smallest subnormal tie");
  expect_true(f32_to_f16(FLT_TRUE_MIN) == 0 && f32_to_f16(-FLT_TRUE_MIN) == 0x8000,
              "f16 underflow keeps the sign");
  expect_true(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))), "f16 NaN stays NaN");
  expect_true(f32_to_f16(bits_float(0x7f800001u)) == 0x7e00, "f16 signalling NaN with a low payload");

#if defined(__FLT16_MAX__)
  // Every 997th float bit pattern (4.3M values, all exponents) against the compiler.
  bad = 0;
  for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 997) {
    const float f = bits_float(static_cast<uint32_t>(u));
    const uint16_t got = f32_to_f16(f), want = f16_oracle(f);
    if (std::isnan(f) ? !std::isnan(f16_to_f32(got)) || (got & 0x8000) != (want & 0x8000)
                      : got != want)
      ++bad;
  }
  expect_true(bad == 0, "f32 -> f16 vs the compiler's _Float16: " + std::to_string(bad) + " mismatches");
#endif
}

RECA_TEST(safetensors_half_bf16_exhaustive) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (float_bits(f) != h << 16) ++bad;
    const uint16_t back = f32_to_bf16(f);
    if (std::isnan(f) ? back != (h | 0x40u) : back != h) ++bad;
  }
  expect_true(bad == 0, "bf16 <-> f32 over all 65536 patterns: " + std::to_string(bad) + " mismatches");

  bad = 0;
  for (uint32_t h = 0; h < 0x7f7f + 1; ++h) {
    const float mid = bits_float((h << 16) | 0x8000u);  // exactly halfway to h + 1
    const uint16_t even = static_cast<uint16_t>((h & 1) ? h + 1 : h);
    if (f32_to_bf16(mid) != even || f32_to_bf16(bits_float((h << 16) | 0x7fffu)) != h ||
        f32_to_bf16(bits_float((h << 16) | 0x8001u)) != h + 1 ||
        f32_to_bf16(-mid) != (0x8000u | even))
      ++bad;
  }
  expect_true(bad == 0, "bf16 ties-to-even at all midpoints: " + std::to_string(bad) + " mismatches");

  bad = 0;
  for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 997) {
    const float f = bits_float(static_cast<uint32_t>(u));
    if (std::isnan(f)) {
      if (!std::isnan(bf16_to_f32(f32_to_bf16(f)))) ++bad;
    } else if (!std::isinf(f) && f32_to_bf16(f) != bf16_reference(f)) {
      ++bad;
    }
  }
  expect_true(bad == 0, "f32 -> bf16 vs a double-precision nearest-even: " + std::to_string(bad) +
                            " mismatches");
  expect_true(f32_to_bf16(FLT_MAX) == 0x7f80, "bf16: FLT_MAX rounds to inf");
  expect_true(f32_to_bf16(bits_float(0x7f800001u)) == 0x7fc0, "bf16 NaN with a low payload stays NaN");
  expect_true(f32_to_bf16(bits_float(0x807fffffu)) == 0x8080, "bf16 subnormal rounds up into the normals");
}

// ---------------------------------------------------------------- round trips

RECA_TEST(safetensors_round_trip_all_dtypes) {
  Rand rng(101);
  const std::vector<std::vector<int64_t>> shapes = {{}, {1}, {0}, {7}, {3, 0, 2}, {2, 3}, {5, 1, 3}};
  SafetensorsWriter w;
  struct Expect {
    std::string name;
    StDtype dt;
    std::vector<int64_t> shape;
    Bytes bytes;
  };
  std::vector<Expect> want;
  for (int d = 0; d <= static_cast<int>(StDtype::U64); ++d) {
    const StDtype dt = static_cast<StDtype>(d);
    for (size_t s = 0; s < shapes.size(); ++s) {
      int64_t numel = 1;
      for (int64_t x : shapes[s]) numel *= x;
      const std::string name = std::string("t.") + st_dtype_name(dt) + "." + std::to_string(s);
      Bytes b = random_bytes(rng, static_cast<size_t>(numel) * st_dtype_size(dt));
      if (s % 2) w.add(name, dt, shapes[s], b.data(), b.size());
      else w.add_view(name, dt, shapes[s], b.data(), b.size());
      want.push_back({name, dt, shapes[s], std::move(b)});
    }
  }
  // Float data stored narrower: what comes back is the rounded value, bit for bit.
  std::vector<float> x(257);
  rng.fill_normal(x.data(), 257, 3.0f);
  x[0] = 1e-7f, x[1] = -70000.0f, x[2] = HUGE_VALF, x[3] = -0.0f;
  w.add_f32("f.as_f16", {257}, x.data(), StDtype::F16);
  w.add_f32("f.as_bf16", {257}, x.data(), StDtype::BF16);
  w.add_f32("f.as_f32", {257}, x.data());
  w.set_metadata("reca.config", "{\"mode\":\"mask\",\"width\":64}");
  w.set_metadata("unicode \xe2\x82\xac", "tab\tnl\nquote\"bs\\ \x01 \xf0\x9f\x98\x80");
  w.set_metadata("empty", "");

  const Bytes file = w.serialize();
  TempDir dir;
  const std::string path = dir.path + "/all.safetensors";
  w.write_atomic(path);
  expect_true(read_file_bytes(path) == file, "write_atomic writes the same bytes as serialize()");

  for (int pass = 0; pass < 2; ++pass) {
    SafetensorsFile f = pass == 0 ? SafetensorsFile::from_memory(file.data(), file.size())
                                  : SafetensorsFile::open(path);
    const std::string tag = pass == 0 ? "memory" : "file";
    expect_true(f.size() == want.size() + 3, tag + ": tensor count");
    expect_true(std::is_sorted(f.names().begin(), f.names().end()), tag + ": names() sorted");
    for (const Expect& e : want) {
      const SafetensorsEntry* got = f.find(e.name);
      if (!got) {
        report_failure(tag + ": missing " + e.name);
        continue;
      }
      expect_true(got->dtype == e.dt && got->shape == e.shape && got->nbytes == e.bytes.size() &&
                      (e.bytes.empty() || std::memcmp(got->data, e.bytes.data(), e.bytes.size()) == 0),
                  tag + ": " + e.name + " round trip");
      expect_true(got->offset % st_dtype_size(e.dt) == 0, tag + ": " + e.name + " aligned");
      Bytes back(e.bytes.size() + 1, 0xee);
      f.read_raw(e.name, e.dt, e.shape, back.data());
      expect_true(std::equal(e.bytes.begin(), e.bytes.end(), back.begin()) && back.back() == 0xee,
                  tag + ": read_raw " + e.name);
    }
    Guarded a(257), b(257), c(257);
    f.read_f32("f.as_f16", {257}, a.data());
    f.read_f32("f.as_bf16", {257}, b.data());
    f.read_f32("f.as_f32", {257}, c.data());
    int bad = 0;
    for (int i = 0; i < 257; ++i) {
      if (float_bits(a[i]) != float_bits(f16_to_f32(f32_to_f16(x[i])))) ++bad;
      if (float_bits(b[i]) != float_bits(bf16_to_f32(f32_to_bf16(x[i])))) ++bad;
      if (float_bits(c[i]) != float_bits(x[i])) ++bad;
    }
    expect_true(bad == 0, tag + ": float storage round trips bit for bit");
    expect_guards(a, tag + " f16 out");
    expect_guards(b, tag + " bf16 out");
    expect_guards(c, tag + " f32 out");
    expect_true(f.metadata().size() == 3 &&
                    f.metadata().at("reca.config") == "{\"mode\":\"mask\",\"width\":64}" &&
                    f.metadata().at("unicode \xe2\x82\xac") ==
                        "tab\tnl\nquote\"bs\\ \x01 \xf0\x9f\x98\x80" &&
                    f.metadata().at("empty").empty(),
                tag + ": metadata round trip");
    check_parsed_consistent(f, tag);
  }

  // An empty writer is a valid (empty) file.
  SafetensorsWriter empty;
  const Bytes e = empty.serialize();
  SafetensorsFile ef = SafetensorsFile::from_memory(e.data(), e.size());
  expect_true(ef.size() == 0 && ef.metadata().empty() && ef.buffer_bytes() == 0, "empty file");
}

// ---------------------------------------------------------------- exact bytes

RECA_TEST(safetensors_golden_bytes) {
  // Two tensors and one metadata key, laid out by hand: F32 before U8 (rank
  // order), compact JSON, 147 header bytes padded with 5 spaces to 152.
  SafetensorsWriter w;
  const uint8_t b[3] = {1, 2, 3};
  w.add("b", StDtype::U8, {3}, b, 3);
  const float a[2] = {1.0f, -2.0f};
  w.add_f32("a.weight", {2}, a);
  w.set_metadata("reca.step", "7");
  const std::string json =
      "{\"__metadata__\":{\"reca.step\":\"7\"},"
      "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}     ";
  Bytes want = {152, 0, 0, 0, 0, 0, 0, 0};
  want.insert(want.end(), json.begin(), json.end());
  const Bytes data = {0x00, 0x00, 0x80, 0x3f,  // 1.0f
                      0x00, 0x00, 0x00, 0xc0,  // -2.0f
                      1, 2, 3};
  want.insert(want.end(), data.begin(), data.end());
  expect_true(want.size() == 171, "golden size");
  expect_true(w.serialize() == want, "writer output equals the hand-built golden file");
  TempDir dir;
  w.write_atomic(dir.path + "/g.safetensors");
  expect_true(read_file_bytes(dir.path + "/g.safetensors") == want, "written file equals golden");

  // The reference writer's own test vectors (safetensors tensor.rs tests).
  {
    SafetensorsWriter r;
    const float v[6] = {0, 1, 2, 3, 4, 5};
    r.add_f32("attn.0", {1, 2, 3}, v);
    const Bytes ref = {
        64,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 46,  48,  34,  58,
        123, 34,  100, 116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104,
        97,  112, 101, 34,  58,  91,  49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,
        95,  111, 102, 102, 115, 101, 116, 115, 34,  58,  91,  48,  44,  50,  52,  93,  125, 125,
        0,   0,   0,   0,   0,   0,   128, 63,  0,   0,   0,   64,  0,   0,   64,  64,  0,   0,
        128, 64,  0,   0,   160, 64};
    expect_true(r.serialize() == ref, "reference vector: attn.0 F32 [1,2,3]");
  }
  {
    SafetensorsWriter r;
    const float v[6] = {0, 1, 2, 3, 4, 5};
    r.add_f32("attn0", {1, 1, 2, 3}, v);
    const Bytes ref = {
        72,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 48,  34,  58,  123,
        34,  100, 116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104, 97,
        112, 101, 34,  58,  91,  49,  44,  49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116,
        97,  95,  111, 102, 102, 115, 101, 116, 115, 34,  58,  91,  48,  44,  50,  52,  93,  125,
        125, 32,  32,  32,  32,  32,  32,  32,  0,   0,   0,   0,   0,   0,   128, 63,  0,   0,
        0,   64,  0,   0,   64,  64,  0,   0,   128, 64,  0,   0,   160, 64};
    expect_true(r.serialize() == ref, "reference vector: attn0 padded with spaces");
  }
  {
    SafetensorsWriter r;
    const Bytes ref = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
    expect_true(r.serialize() == ref, "reference vector: empty");
    r.set_metadata("framework", "pt");
    const Bytes ref2 = {40,  0,   0,   0,   0,   0,   0,   0,   123, 34,  95,  95,  109, 101, 116, 97,
                        100, 97,  116, 97,  95,  95,  34,  58,  123, 34,  102, 114, 97,  109, 101, 119,
                        111, 114, 107, 34,  58,  34,  112, 116, 34,  125, 125, 32,  32,  32,  32,  32};
    expect_true(r.serialize() == ref2, "reference vector: metadata only");
  }

  // Layout: descending element size, then name; every tensor aligned to its size.
  SafetensorsWriter m;
  const uint8_t odd[3] = {9, 9, 9};
  const double dd[1] = {2.5};
  const uint16_t hh[1] = {0x3c00};
  m.add("a.u8", StDtype::U8, {3}, odd, 3);
  m.add("b.f64", StDtype::F64, {1}, dd, 8);
  m.add("c.f16", StDtype::F16, {1}, hh, 2);
  m.add_f32("d.f32", {1}, reinterpret_cast<const float*>("\0\0\x80\x3f"));
  const Bytes mb = m.serialize();
  SafetensorsFile mf = SafetensorsFile::from_memory(mb.data(), mb.size());
  expect_true(mf.get("b.f64").offset == 0 && mf.get("d.f32").offset == 8 &&
                  mf.get("c.f16").offset == 12 && mf.get("a.u8").offset == 14,
              "layout by descending dtype rank, then name");
}

// ---------------------------------------------------------------- corrupt input

RECA_TEST(safetensors_truncated_at_every_byte) {
  const Bytes file = small_valid_file();
  SafetensorsFile whole = SafetensorsFile::from_memory(file.data(), file.size());
  const uint64_t header_end = file.size() - whole.buffer_bytes();
  int wrong = 0;
  for (size_t cut = 0; cut < file.size(); ++cut) {
    const Bytes part(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(cut));
    // The tensor the cut lands in (first in data order that no longer fits).
    std::string victim;
    if (cut >= header_end) {
      uint64_t best = UINT64_MAX;
      for (const std::string& n : whole.names()) {
        const SafetensorsEntry& e = whole.get(n);
        if (e.offset + e.nbytes > cut - header_end && e.offset < best) best = e.offset, victim = n;
      }
    }
    ErrorCode code = ErrorCode::Internal;
    std::string msg;
    const Outcome o = run_catching(
        [&] { SafetensorsFile::from_memory(part.data(), part.size(), "cut"); }, &code, &msg);
    const bool ok = o == Outcome::Threw && code == ErrorCode::Checkpoint &&
                    (victim.empty() || msg.find("'" + victim + "'") != std::string::npos);
    if (!ok && ++wrong <= 5)
      report_failure("cut at " + std::to_string(cut) + ": " +
                     (o == Outcome::Ok ? std::string("accepted") : msg));
  }
  expect_true(wrong == 0, "every truncation is E_CHECKPOINT naming the cut tensor");

  // The same through the file path, at a few cut points in each region.
  TempDir dir;
  const std::string path = dir.path + "/cut.safetensors";
  for (size_t cut : {size_t(0), size_t(5), size_t(8), size_t(20), size_t(header_end),
                     size_t(header_end + 3), file.size() - 1}) {
    write_file_bytes(path, Bytes(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(cut)));
    expect_error(ErrorCode::Checkpoint, [&] { SafetensorsFile::open(path); },
                 "file cut at " + std::to_string(cut), path);
  }
  write_file_bytes(path, file);
  check_parsed_consistent(SafetensorsFile::open(path), "uncut file");
  Bytes longer = file;
  longer.push_back(0);
  write_file_bytes(path, longer);
  expect_error(ErrorCode::Checkpoint, [&] { SafetensorsFile::open(path); }, "one trailing byte",
               "unexpected bytes after the last tensor");
}

RECA_TEST(safetensors_header_mutations_never_crash) {
  // Seeded mutations of a valid file's header: bit flips, structural
  // characters, insertions and deletions (with or without fixing the length
  // field). Each must either parse into a consistent file or throw
  // E_CHECKPOINT; anything else (a crash, another exception, an
  // out-of-bounds read under the address sanitizer) fails.
  const Bytes file = small_valid_file();
  SafetensorsFile whole = SafetensorsFile::from_memory(file.data(), file.size());
  const size_t hlen = file.size() - 8 - whole.buffer_bytes();
  const char specials[] = "{}[]\":,\\u0129-.eE \t\nx";
  Rand rng(777);
  int accepted = 0, rejected = 0, foreign = 0;
  const int kMutations = 6000;
  for (int it = 0; it < kMutations; ++it) {
    Bytes f = file;
    const int edits = 1 + static_cast<int>(rng.index(4));
    bool fix_len = rng.index(2) == 0;
    for (int k = 0; k < edits; ++k) {
      const size_t cur_hlen = f.size() - 8 - whole.buffer_bytes();
      const size_t pos = 8 + static_cast<size_t>(rng.index(static_cast<int64_t>(cur_hlen)));
      switch (rng.index(6)) {
        case 0: f[pos] ^= static_cast<uint8_t>(1u << rng.index(8)); break;
        case 1: f[pos] = static_cast<uint8_t>(specials[rng.index(sizeof specials - 1)]); break;
        case 2: f[pos] = static_cast<uint8_t>(rng.index(256)); break;
        case 3:
          f.insert(f.begin() + static_cast<std::ptrdiff_t>(pos),
                   static_cast<uint8_t>(specials[rng.index(sizeof specials - 1)]));
          break;
        case 4:
          if (cur_hlen > 1) f.erase(f.begin() + static_cast<std::ptrdiff_t>(pos));
          break;
        case 5:  // a digit changed: offsets and shapes drift
          f[pos] = static_cast<uint8_t>('0' + rng.index(10));
          break;
      }
    }
    if (fix_len) {
      const Bytes n = le64(f.size() - 8 - whole.buffer_bytes());
      std::copy(n.begin(), n.end(), f.begin());
    } else if (rng.index(8) == 0) {
      f[static_cast<size_t>(rng.index(8))] ^= static_cast<uint8_t>(1u << rng.index(8));
    }
    std::string msg;
    ErrorCode code = ErrorCode::Internal;
    const Outcome o = run_catching(
        [&] {
          SafetensorsFile p = SafetensorsFile::from_memory(f.data(), f.size(), "mutant");
          check_parsed_consistent(p, "mutant " + std::to_string(it));
        },
        &code, &msg);
    if (o == Outcome::Ok) ++accepted;
    else if (o == Outcome::Threw && code == ErrorCode::Checkpoint) ++rejected;
    else if (++foreign <= 5)
      report_failure("mutation " + std::to_string(it) + ": " + error_code_name(code) + " " + msg);
  }
  (void)hlen;
  std::printf("    %d mutants: %d accepted, %d rejected with E_CHECKPOINT\n", kMutations, accepted,
              rejected);
  expect_true(foreign == 0, "mutants only ever fail with E_CHECKPOINT");
  expect_true(rejected > kMutations / 2 && accepted > 0, "the mutations exercise both outcomes");
}

RECA_TEST(safetensors_malformed_headers) {
  const Bytes b8(8, 0);
  const std::string one = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  expect_good_header(one, b8, "baseline");

  // Length field.
  {
    Bytes f = make_file(one, b8);
    const std::vector<uint64_t> lens = {uint64_t(1) << 63, UINT64_MAX, 100000001, f.size() - 7,
                                        f.size(), 0};
    for (uint64_t n : lens) {
      Bytes g = f;
      const Bytes l = le64(n);
      std::copy(l.begin(), l.end(), g.begin());
      expect_error(ErrorCode::Checkpoint, [&] { SafetensorsFile::from_memory(g.data(), g.size()); },
                   "header length " + std::to_string(n));
    }
    for (size_t n = 0; n < 8; ++n)
      expect_error(ErrorCode::Checkpoint, [&] { SafetensorsFile::from_memory(f.data(), n); },
                   "file of " + std::to_string(n) + " bytes", "too short");
    expect_error(ErrorCode::Checkpoint,
                 [&] {
                   Bytes g = le64(200000000);
                   SafetensorsFile::from_memory(g.data(), g.size());
                 },
                 "absurd header length", "limit");
  }

  auto T = [](const std::string& name, const std::string& body) {
    return "\"" + name + "\":" + body;
  };
  const std::string a0 = T("a", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}");
  const std::string b8o = T("b", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}");
  const Bytes b16(16, 0);
  expect_good_header("{" + a0 + "," + b8o + "}", b16, "two tensors");
  expect_good_header("{" + b8o + "," + a0 + "}", b16, "two tensors, header order reversed");

  // Tiling.
  expect_bad_header("{" + a0 + "," + T("b", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}") + "}",
                    Bytes(12, 0), "overlap", "overlaps");
  expect_bad_header("{" + a0 + "," + T("b", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}") + "}",
                    b8, "two tensors on the same bytes", "overlaps");
  expect_bad_header("{" + a0 + "," + T("b", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}") + "}",
                    Bytes(20, 0), "gap", "gap");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}") + "}",
                    Bytes(12, 0), "gap at the start", "gap");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}") + "}", b8,
                    "end before begin");
  expect_bad_header(one, Bytes(9, 0), "trailing byte", "unexpected bytes");
  expect_bad_header(one, Bytes(7, 0), "truncated data names the tensor", "'x'");
  expect_good_header("{" + T("z", "{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}") + "," + a0 +
                         "," + T("e", "{\"dtype\":\"U8\",\"shape\":[2,0],\"data_offsets\":[8,8]}") + "}",
                     b8, "zero-size tensors at the edges");
  expect_bad_header("{" + a0 + "," + T("e", "{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]}") + "}",
                    b8, "zero-size tensor inside another", "overlaps");

  // Sizes.
  expect_bad_header("{" + T("a", "{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}") + "}", b8,
                    "wrong dtype size", "needs 4");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[4611686018427387904,8],\"data_offsets\":[0,8]}") + "}",
                    b8, "shape product overflows", "overflows");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}") + "}",
                    b8, "shape times dtype size overflows", "overflows");
  expect_bad_header("{" + T("a", "{\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,8]}") + "}",
                    b8, "dimension above INT64_MAX", "too large");
  expect_bad_header("{" + T("a", "{\"dtype\":\"U8\",\"shape\":[18446744073709551616],\"data_offsets\":[0,8]}") + "}",
                    b8, "dimension above UINT64_MAX", "too large");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551615,7]}") + "}",
                    b8, "offset at UINT64_MAX");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}") + "}", b8,
                    "negative dim", "non-negative");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}") + "}", b8,
                    "fractional dim", "fraction");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[0,8]}") + "}", b8,
                    "exponent dim", "fraction");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}") + "}", b8,
                    "leading zero", "leading zero");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}") + "}", b8,
                    "string dim");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}") + "}", b8,
                    "shape not an array");
  std::string deep_shape = "[";
  for (int i = 0; i < 65; ++i) deep_shape += i ? ",1" : "2";
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":" + deep_shape + "],\"data_offsets\":[0,8]}") + "}",
                    b8, "rank 65", "dimensions");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}") + "}", b8,
                    "three offsets", "exactly two");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}") + "}", b8,
                    "one offset", "exactly two");

  // Entries.
  expect_bad_header("{" + T("a", "{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}") + "}", b8,
                    "unknown dtype", "unsupported dtype");
  expect_bad_header("{" + T("a", "{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}") + "}", b8,
                    "dtype is case-sensitive", "unsupported dtype");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F4\",\"shape\":[16],\"data_offsets\":[0,8]}") + "}", b8,
                    "sub-byte dtype", "unsupported dtype");
  expect_bad_header("{" + T("a", "{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}") + "}", b8,
                    "numeric dtype");
  expect_bad_header("{" + T("a", "{\"shape\":[2],\"data_offsets\":[0,8]}") + "}", b8, "no dtype",
                    "no dtype");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"data_offsets\":[0,8]}") + "}", b8, "no shape",
                    "no shape");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[2]}") + "}", b8, "no offsets",
                    "no data_offsets");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}") + "}",
                    b8, "unknown entry key", "unknown key");
  expect_bad_header("{" + T("a", "[1]") + "}", b8, "entry not an object");
  expect_bad_header("{" + T("a", "null") + "}", b8, "null entry");

  // Duplicate keys.
  expect_bad_header("{" + a0 + "," + a0 + "}", b16, "duplicate tensor", "duplicate");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}") + "}",
                    b8, "duplicate dtype key", "duplicate");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[2],\"shape\":[2],\"data_offsets\":[0,8]}") + "}",
                    b8, "duplicate shape key", "duplicate");
  expect_bad_header("{\"__metadata__\":{},\"__metadata__\":{}," + a0 + "}", b8, "duplicate __metadata__",
                    "duplicate");
  expect_bad_header("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}," + a0 + "}", b8,
                    "duplicate metadata key", "duplicate");
  expect_bad_header("{" + a0 + "," + T("\\u0061", "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}") + "}",
                    b16, "duplicate after unescaping", "duplicate");

  // Metadata values must be strings.
  for (const std::string v : {"1", "-1.5", "true", "false", "null", "{}", "[\"x\"]", "{\"a\":\"b\"}"})
    expect_bad_header("{\"__metadata__\":{\"k\":" + v + "}," + a0 + "}", b8, "metadata value " + v,
                      "must be a string");
  expect_bad_header("{\"__metadata__\":[]," + a0 + "}", b8, "metadata not an object", "must be an object");
  expect_bad_header("{\"__metadata__\":null," + a0 + "}", b8, "metadata null", "must be an object");
  expect_good_header("{\"__metadata__\":{}," + a0 + "}", b8, "empty metadata");

  // JSON syntax.
  expect_bad_header("", {}, "empty header");
  expect_bad_header(" {}", {}, "leading space", "does not start");
  expect_bad_header("[]", {}, "array root", "does not start");
  expect_good_header("{}", {}, "empty object");
  expect_good_header("{} \t\n\r ", {}, "trailing whitespace");
  expect_good_header("{ \"a\" : { \"shape\" : [ 2 ] , \"data_offsets\" : [ 0 , 8 ] , \"dtype\" : \"F32\" } }",
                     b8, "whitespace everywhere, any key order");
  expect_bad_header(std::string("{}\0", 3), {}, "NUL padding", "after the header");
  expect_bad_header("{}x", {}, "garbage after the object", "after the header");
  expect_bad_header("{}{}", {}, "two objects", "after the header");
  expect_bad_header("{", {}, "unterminated object");
  expect_bad_header("{\"a\"", {}, "key without value");
  expect_bad_header("{\"a\":", {}, "missing value");
  expect_bad_header("{," + a0 + "}", b8, "leading comma");
  expect_bad_header("{" + a0 + ",}", b8, "trailing comma");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[2,],\"data_offsets\":[0,8]}") + "}", b8,
                    "trailing comma in array");
  expect_bad_header("{" + T("a", "{\"dtype\":\"F32\",\"shape\":[2]\"data_offsets\":[0,8]}") + "}", b8,
                    "missing comma");
  expect_bad_header("{'a':{}}", {}, "single quotes");
  expect_bad_header("{a:{}}", {}, "bare key");
  expect_bad_header("{\"a\":{}", {}, "unclosed root");
  expect_bad_header("{\"a\":{\"dtype\":\"F32", {}, "unterminated string", "unterminated");

  // Strings: escapes, surrogates, UTF-8.
  expect_bad_header("{\"a\\q\":{}}", {}, "bad escape", "invalid escape");
  expect_bad_header("{\"a\\u12\":{}}", {}, "short \\u", "hex");
  expect_bad_header("{\"a\\u12", {}, "\\u at the end", "truncated");
  expect_bad_header("{\"\\ud800\":{}}", {}, "lone high surrogate", "surrogate");
  expect_bad_header("{\"\\udc00\":{}}", {}, "lone low surrogate", "surrogate");
  expect_bad_header("{\"\\ud800\\u0041\":{}}", {}, "high surrogate + non-surrogate", "surrogate");
  expect_bad_header("{\"a\nb\":{}}", {}, "raw newline in a string", "control character");
  expect_bad_header("{\"\xff\":{}}", {}, "invalid UTF-8 byte", "UTF-8");
  expect_bad_header("{\"\xc0\xaf\":{}}", {}, "overlong UTF-8", "UTF-8");
  expect_bad_header("{\"\xed\xa0\x80\":{}}", {}, "UTF-8 encoded surrogate", "UTF-8");
  expect_bad_header("{\"\xf4\x90\x80\x80\":{}}", {}, "UTF-8 above U+10FFFF", "UTF-8");
  expect_bad_header("{\"\xe2\x82\":{}}", {}, "truncated UTF-8 sequence", "UTF-8");
  expect_bad_header("{\"\xe2\x82", {}, "UTF-8 sequence cut by the header end", "UTF-8");
  {
    const std::string h = "{\"\\u00e9\\ud83d\\ude00\\/\\\"\\\\\\b\\f\\n\\r\\t\":"
                          "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    const Bytes f = make_file(h, Bytes(1, 42));
    std::string msg;
    if (run_catching(
            [&] {
              SafetensorsFile p = SafetensorsFile::from_memory(f.data(), f.size());
              const std::string want = "\xc3\xa9\xf0\x9f\x98\x80/\"\\\b\f\n\r\t";
              expect_true(p.names().size() == 1 && p.names()[0] == want, "escapes decoded");
            },
            nullptr, &msg) != Outcome::Ok)
      report_failure("escaped name: " + msg);
  }

  // Nesting far deeper than the schema: rejected at the first extra level, no recursion.
  {
    std::string deep = "{\"__metadata__\":{\"k\":";
    deep += std::string(200000, '[');
    expect_bad_header(deep, {}, "200000 nested arrays in metadata", "must be a string");
    std::string deep2 = "{\"a\":{\"shape\":" + std::string(200000, '[');
    expect_bad_header(deep2, {}, "200000 nested arrays in a shape", "expected an integer");
    std::string deep3 = std::string(200000, '{');
    expect_bad_header(deep3, {}, "200000 nested objects");
  }

  // Foreign files.
  expect_error(ErrorCode::Checkpoint,
               [] {
                 const std::string zip = "PK\x03\x04 not a checkpoint at all, sorry";
                 SafetensorsFile::from_memory(zip.data(), zip.size(), "zip");
               },
               "zip header", "zip");
  expect_error(ErrorCode::Checkpoint,
               [] {
                 const std::string pickle = "\x80\x02}q\x00(X\x05\x00\x00\x00model";
                 SafetensorsFile::from_memory(pickle.data(), pickle.size());
               },
               "pickle header");
}

RECA_TEST(safetensors_read_f32_checks_names_shapes_dtypes) {
  SafetensorsWriter w;
  const float x[6] = {1, 2, 3, 4, 5, 6};
  w.add_f32("w.f32", {2, 3}, x);
  w.add_f32("w.f16", {2, 3}, x, StDtype::F16);
  w.add_f32("w.bf16", {6}, x, StDtype::BF16);
  const int32_t ids[2] = {1, 2};
  w.add("ids", StDtype::I32, {2}, ids, 8);
  const Bytes b = w.serialize();
  SafetensorsFile f = SafetensorsFile::from_memory(b.data(), b.size(), "ckpt.safetensors");
  float out[6];
  f.read_f32("w.f16", {2, 3}, out);
  expect_close("f16 read", out, x, 6, 0, 0);
  f.read_f32("w.bf16", {6}, out);
  expect_close("bf16 read", out, x, 6, 0, 0);
  expect_error(ErrorCode::Checkpoint, [&] { f.read_f32("w.nope", {2, 3}, out); }, "missing tensor",
               "'w.nope'");
  expect_error(ErrorCode::Checkpoint, [&] { f.read_f32("w.f32", {3, 2}, out); }, "wrong shape",
               "'w.f32' is [2, 3] F32, expected [3, 2]");
  expect_error(ErrorCode::Checkpoint, [&] { f.read_f32("w.f32", {6}, out); }, "wrong rank",
               "ckpt.safetensors");
  expect_error(ErrorCode::Checkpoint, [&] { f.read_f32("ids", {2}, out); }, "integer tensor as float",
               "'ids' is [2] I32, expected [2] F32|F16|BF16");
  expect_error(ErrorCode::Checkpoint, [&] { f.read_raw("ids", StDtype::I64, {2}, out); },
               "read_raw dtype", "expected [2] I64");
  expect_error(ErrorCode::InvalidArgument, [&] { f.read_f32("w.f32", {2, 3}, nullptr); }, "null out");
  expect_error(ErrorCode::Checkpoint, [&] { f.get("missing"); }, "get missing", "'missing'");
  expect_true(f.find("missing") == nullptr, "find missing");
}

RECA_TEST(safetensors_writer_rejects_misuse) {
  const float x[4] = {0, 0, 0, 0};
  auto bad = [&](const std::function<void(SafetensorsWriter&)>& fn, const std::string& what,
                 const std::string& needle = "") {
    SafetensorsWriter w;
    w.add_f32("ok", {1}, x);
    expect_error(ErrorCode::InvalidArgument, [&] { fn(w); }, what, needle);
    expect_true(w.size() == 1, what + ": writer unchanged");
  };
  bad([&](SafetensorsWriter& w) { w.add_f32("ok", {1}, x); }, "duplicate name", "duplicate");
  bad([&](SafetensorsWriter& w) { w.add_f32("", {1}, x); }, "empty name", "empty");
  bad([&](SafetensorsWriter& w) { w.add_f32("a\nb", {1}, x); }, "newline in name", "control");
  bad([&](SafetensorsWriter& w) { w.add_f32(std::string("a\0b", 3), {1}, x); }, "NUL in name", "control");
  bad([&](SafetensorsWriter& w) { w.add_f32("a\x7f", {1}, x); }, "DEL in name", "control");
  bad([&](SafetensorsWriter& w) { w.add_f32("a\xc2\x85", {1}, x); }, "C1 control in name", "control");
  bad([&](SafetensorsWriter& w) { w.add_f32("a\xff", {1}, x); }, "invalid UTF-8 name", "UTF-8");
  bad([&](SafetensorsWriter& w) { w.add_f32("__metadata__", {1}, x); }, "reserved name", "reserved");
  bad([&](SafetensorsWriter& w) { w.add_f32("n", {-1}, x); }, "negative dim", "negative");
  bad([&](SafetensorsWriter& w) { w.add_f32("n", {INT64_MAX, 2}, x); }, "overflowing shape", "overflows");
  bad([&](SafetensorsWriter& w) { w.add("n", StDtype::F32, {2}, x, 4); }, "byte count mismatch", "needs 8");
  bad([&](SafetensorsWriter& w) { w.add("n", StDtype::F32, {2}, nullptr, 8); }, "null data", "null");
  bad([&](SafetensorsWriter& w) { w.add_f32("n", {1}, x, StDtype::I32); }, "float stored as I32", "I32");
  bad([&](SafetensorsWriter& w) { w.set_metadata("k", "\xc3"); }, "metadata not UTF-8", "UTF-8");
  bad([&](SafetensorsWriter& w) { w.write_atomic(""); }, "empty path", "empty");
  // Names that are unusual but legal round-trip.
  SafetensorsWriter w;
  w.add_f32("caf\xc3\xa9 \"quoted\" back\\slash/\xf0\x9f\x98\x80", {1}, x);
  const Bytes b = w.serialize();
  SafetensorsFile f = SafetensorsFile::from_memory(b.data(), b.size());
  expect_true(f.names().size() == 1 &&
                  f.names()[0] == "caf\xc3\xa9 \"quoted\" back\\slash/\xf0\x9f\x98\x80",
              "unusual legal name round trip");
}

// ---------------------------------------------------------------- atomic write

RECA_TEST(safetensors_atomic_write_keeps_old_file_on_failure) {
  TempDir dir;
  expect_true(!dir.path.empty(), "temp dir");
  const std::string path = dir.path + "/model.safetensors";
  std::vector<float> v1(64, 1.0f), v2(64, 2.0f);
  SafetensorsWriter w1;
  w1.add_f32("p", {64}, v1.data());
  w1.write_atomic(path);
  const Bytes old = read_file_bytes(path);
  ::chmod(path.c_str(), 0640);

  auto only_expected_files = [&](const std::vector<std::string>& want, const std::string& what) {
    const auto got = dir.entries();
    if (got != want) {
      std::string s;
      for (const auto& n : got) s += n + " ";
      report_failure(what + ": directory holds: " + s);
    }
  };

  // 1. The write itself fails halfway (file size limit): old file intact, no temp left.
  {
    SafetensorsWriter big;
    std::vector<float> huge(1 << 20, 3.0f);  // 4 MiB
    big.add_f32("p", {1 << 20}, huge.data());
    struct rlimit saved;
    getrlimit(RLIMIT_FSIZE, &saved);
    struct rlimit lim = saved;
    lim.rlim_cur = 64 * 1024;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    expect_error(ErrorCode::Io, [&] { big.write_atomic(path); }, "write past the size limit",
                 "too large");
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, prev);
    expect_true(read_file_bytes(path) == old, "old file intact after a failed write");
    only_expected_files({"model.safetensors"}, "after a failed write");
  }

  // 2. The target name is taken by a non-empty directory: rename fails.
  {
    const std::string sub = dir.path + "/taken";
    ::mkdir(sub.c_str(), 0755);
    write_file_bytes(sub + "/inner", Bytes{1});
    SafetensorsWriter w;
    w.add_f32("p", {64}, v2.data());
    expect_error(ErrorCode::Io, [&] { w.write_atomic(sub); }, "target is a directory", "rename");
    struct stat st;
    expect_true(::stat(sub.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
                    read_file_bytes(sub + "/inner") == Bytes{1},
                "directory untouched");
    only_expected_files({"model.safetensors", "taken"}, "after rename onto a directory");
    expect_error(ErrorCode::InvalidArgument, [&] { w.write_atomic(sub + "/"); },
                 "path ending in a slash", "directory");
  }

  // 3. The directory does not exist / a path component is a file.
  {
    SafetensorsWriter w;
    w.add_f32("p", {64}, v2.data());
    expect_error(ErrorCode::Io, [&] { w.write_atomic(dir.path + "/missing/model.safetensors"); },
                 "missing directory", "No such file");
    expect_error(ErrorCode::Io, [&] { w.write_atomic(path + "/model.safetensors"); },
                 "parent is a file", "Not a directory");
    expect_true(read_file_bytes(path) == old, "old file intact after bad paths");
    only_expected_files({"model.safetensors", "taken"}, "after bad paths");
  }

  // 4. A successful write replaces the file whole and keeps its permissions.
  {
    SafetensorsWriter w;
    w.add_f32("p", {64}, v2.data());
    w.write_atomic(path);
    SafetensorsFile f = SafetensorsFile::open(path);
    std::vector<float> back(64);
    f.read_f32("p", {64}, back.data());
    expect_close("replaced content", back.data(), v2.data(), 64, 0, 0);
    struct stat st;
    expect_true(::stat(path.c_str(), &st) == 0 && (st.st_mode & 0777) == 0640, "permissions kept");
    only_expected_files({"model.safetensors", "taken"}, "after a good write");
  }

  // 5. Opening what is not there, or not a file.
  expect_error(ErrorCode::Io, [&] { SafetensorsFile::open(dir.path + "/nope.safetensors"); },
               "open missing file", "No such file");
  expect_error(ErrorCode::Io, [&] { SafetensorsFile::open(dir.path); }, "open a directory",
               "Is a directory");
}
