// A small test harness for the native kernels (no Node needed): registration,
// random inputs, buffers with guard zones, closeness checks, ISA iteration and
// finite-difference helpers.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"

namespace reca::test {

struct TestCase {
  const char* name;
  void (*fn)();
};
std::vector<TestCase>& registry();
struct Registrar {
  Registrar(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

// Records a failure for the running test (the test goes on, so one run shows
// every mismatch).
void report_failure(const std::string& what);
int failures_in_current_test();

// Deterministic inputs: each test seeds its own generator.
struct Rand {
  std::mt19937_64 gen;
  explicit Rand(uint64_t seed) : gen(seed) {}
  float normal(float stddev = 1.0f) { return std::normal_distribution<float>(0.0f, stddev)(gen); }
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
  int64_t index(int64_t n) { return std::uniform_int_distribution<int64_t>(0, n - 1)(gen); }
  void fill_normal(float* p, int64_t n, float stddev = 1.0f) {
    for (int64_t i = 0; i < n; ++i) p[i] = normal(stddev);
  }
  void fill_uniform(float* p, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; ++i) p[i] = uniform(lo, hi);
  }
};

// A float buffer with kGuard sentinel floats on each side. data() points at
// the payload; guards_intact() says whether a kernel wrote outside it.
class Guarded {
 public:
  static constexpr int64_t kGuard = 37;  // odd, so payload alignment varies
  explicit Guarded(int64_t n, float fill = 0.0f);
  float* data() { return buf_.data() + kGuard; }
  const float* data() const { return buf_.data() + kGuard; }
  int64_t size() const { return n_; }
  float& operator[](int64_t i) { return data()[i]; }
  bool guards_intact() const;
  std::vector<float> vec() const { return std::vector<float>(data(), data() + n_); }

 private:
  int64_t n_;
  std::vector<float> buf_;
};

// |got - want| <= atol + rtol * |want| elementwise (NaN never passes). Reports
// the worst element. Returns true when all close.
bool expect_close(const std::string& what, const float* got, const float* want, int64_t n,
                  double rtol, double atol);
bool expect_close(const std::string& what, const float* got, const double* want, int64_t n,
                  double rtol, double atol);
void expect_true(bool cond, const std::string& what);
// True when fn throws a reca::Error with code `want` (any other outcome: false).
bool throws(ErrorCode want, const std::function<void()>& fn);
void expect_guards(const Guarded& g, const std::string& what);

// Runs fn once per ISA level this CPU supports, with that level active (the
// previous level is restored afterwards). fn receives the level.
void for_each_isa(const std::function<void(Isa)>& fn);

// Runs `run` at 1, 2 and 3 threads; every run must give the same bits (the
// thread count is restored afterwards).
void expect_same_across_threads(const std::string& what,
                                const std::function<std::vector<float>()>& run);

std::vector<double> to_double(const float* p, int64_t n);
std::vector<float> to_float(const double* p, int64_t n);

// Central-difference check of an analytic gradient, in double precision.
// loss(x) evaluates a scalar in double; grad holds d loss / d x from the
// backward kernel under test (float). Checks `samples` random coordinates (or
// all when samples >= n) with step h; |num - ana| <= atol + rtol * |num|.
void fd_check(const std::string& what, std::vector<double>& x,
              const std::function<double(const std::vector<double>&)>& loss, const float* grad,
              int samples, Rand& rng, double h = 1e-5, double rtol = 1e-4, double atol = 1e-6);

std::string shape_str(std::initializer_list<int64_t> dims);

}  // namespace reca::test

#define RECA_TEST(name)                                                   \
  static void name();                                                     \
  static ::reca::test::Registrar name##_registrar(#name, &name);          \
  static void name()
