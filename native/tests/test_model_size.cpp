// Sizes derived from a config: the measured layout equals the built one, and
// configs too large for int64 or for memory fail with the true size, quickly,
// instead of wrapping into a small or negative allocation.
#include <chrono>
#include <cstring>
#include <functional>
#include <string>

#include "core/error.h"
#include "model/backend.h"
#include "model/params.h"
#include "model/reca_model.h"
#include "tests/alloc_probe.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::model;
using namespace reca::test;

namespace {

// Runs fn; returns the reca::Error it throws (code, message), or reports none.
std::pair<ErrorCode, std::string> error_of(const std::function<void()>& fn, const std::string& what) {
  try {
    fn();
  } catch (const Error& e) {
    return {e.code(), e.what()};
  }
  report_failure(what + ": no error thrown");
  return {ErrorCode::Internal, ""};
}

}  // namespace

RECA_TEST(layout_measure_matches_built_layout) {
  for (const char* preset : {"tiny", "small", "base"}) {
    for (const Mode mode : {Mode::Ar, Mode::Mask, Mode::Flow}) {
      const ModelConfig cfg = ModelConfig::preset(preset, mode);
      const std::string what = std::string(preset) + "/" + mode_name(mode);
      const ParamLayout layout(cfg);
      const LayoutSize s = ParamLayout::measure(cfg);
      LayoutSize built;
      for (const ParamInfo& p : layout.params()) {
        for (ParamCounts* pc : {&built.all, &built.group(p.group())}) {
          pc->tensors += 1;
          pc->numel += p.numel;
          pc->floats += (p.numel + 15) / 16 * 16;
        }
      }
      expect_true(!s.overflow, what + ": no overflow");
      expect_true(s.all.floats == layout.total(), what + ": floats == total()");
      expect_true(static_cast<double>(layout.total()) == s.approx_floats, what + ": approx exact");
      for (const char* g : {"und", "conn", "vq", "gen"}) {
        const ParamCounts &a = s.group(g), &b = built.group(g);
        expect_true(a.tensors == b.tensors && a.numel == b.numel && a.floats == b.floats,
                    what + ": group " + g + " measured as built");
      }
    }
  }
}

RECA_TEST(model_size_beyond_int64_is_invalid_argument_with_true_size) {
  ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
  // depth · mlp_ratio · width² = 2^80 floats: wraps int64.
  cfg.depth = cfg.mlp_ratio = cfg.width = 1 << 20;
  const auto t0 = std::chrono::steady_clock::now();
  const auto e = error_of([&] { RecaModel m(cfg, cpu_backend()); }, "2^80 floats");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  expect_true(e.first == ErrorCode::InvalidArgument,
              std::string("2^80 floats: E_INVALID_ARGUMENT, got ") + error_code_name(e.first));
  expect_true(e.second.find("too large") != std::string::npos &&
                  e.second.find("e+24 floats") != std::string::npos,
              "2^80 floats: the message states the true size: " + e.second);
  expect_true(secs < 1.0, "2^80 floats: rejected in " + std::to_string(secs) + " s");
  expect_true(ParamLayout::measure(cfg).overflow, "measure reports the overflow");
}

RECA_TEST(model_size_beyond_memory_is_out_of_memory_with_true_size) {
  ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
  // 12.6M tensors, 2.1e14 bytes: beyond any address space (2^47), in int64.
  cfg.depth = 1 << 20;
  cfg.width = 2048;
  const LayoutSize s = ParamLayout::measure(cfg);
  expect_true(!s.overflow && s.all.floats * 4 > (int64_t(1) << 47), "the size fits int64");
  const int64_t bytes0 = allocated_bytes();
  const auto t0 = std::chrono::steady_clock::now();
  const auto e = error_of([&] { RecaModel m(cfg, cpu_backend()); }, "2^47+ bytes");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  expect_true(e.first == ErrorCode::OutOfMemory,
              std::string("2^47+ bytes: E_OUT_OF_MEMORY, got ") + error_code_name(e.first));
  expect_true(e.second.find(std::to_string(s.all.floats * 4) + " bytes") != std::string::npos,
              "the message states the true byte count " + std::to_string(s.all.floats * 4) +
                  ": " + e.second);
  // Refused before the 12.6M-entry table is built.
  expect_true(secs < 1.0, "2^47+ bytes: rejected in " + std::to_string(secs) + " s");
  expect_true(allocated_bytes() - bytes0 < (int64_t(1) << 20), "2^47+ bytes: little allocated");
}

RECA_TEST(backend_alloc_never_returns_null) {
  Backend& be = cpu_backend();
  const auto e = error_of([&] { be.alloc(-64); }, "alloc(-64)");
  expect_true(e.first == ErrorCode::Internal && e.second.find("negative") != std::string::npos,
              "alloc of a negative size is refused: " + e.second);
  void* p = be.alloc(0);
  expect_true(p != nullptr, "alloc(0) gives a block");
  be.release(p);
}
