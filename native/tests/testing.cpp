#include "tests/testing.h"

#include "core/threadpool.h"

#include <algorithm>
#include <cstring>
#include <sstream>

namespace reca::test {
namespace {
int g_failures = 0;
constexpr uint32_t kSentinelBits = 0x7fc0dead;  // a NaN payload no kernel produces
float sentinel() {
  float f;
  std::memcpy(&f, &kSentinelBits, sizeof f);
  return f;
}
bool is_sentinel(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b == kSentinelBits;
}
template <class W>
bool close_impl(const std::string& what, const float* got, const W* want, int64_t n, double rtol,
                double atol) {
  int64_t bad = 0, worst = -1;
  double worst_excess = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double g = got[i], w = static_cast<double>(want[i]);
    const double err = std::fabs(g - w), tol = atol + rtol * std::fabs(w);
    if (!(err <= tol)) {
      ++bad;
      const double excess = std::isnan(err) ? 1e300 : err - tol;
      if (worst < 0 || excess > worst_excess) worst = i, worst_excess = excess;
    }
  }
  if (bad == 0) return true;
  std::ostringstream os;
  os << what << ": " << bad << "/" << n << " elements differ; worst at " << worst << ": got "
     << got[worst] << " want " << static_cast<double>(want[worst]) << " (rtol " << rtol
     << ", atol " << atol << ")";
  report_failure(os.str());
  return false;
}
}  // namespace

std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}

void report_failure(const std::string& what) {
  ++g_failures;
  std::fprintf(stderr, "    FAIL %s\n", what.c_str());
}
int failures_in_current_test() { return g_failures; }

Guarded::Guarded(int64_t n, float fill) : n_(n), buf_(static_cast<size_t>(n + 2 * kGuard)) {
  std::fill(buf_.begin(), buf_.end(), sentinel());
  std::fill(buf_.begin() + kGuard, buf_.begin() + kGuard + n, fill);
}

bool Guarded::guards_intact() const {
  for (int64_t i = 0; i < kGuard; ++i)
    if (!is_sentinel(buf_[i]) || !is_sentinel(buf_[kGuard + n_ + i])) return false;
  return true;
}

bool expect_close(const std::string& what, const float* got, const float* want, int64_t n,
                  double rtol, double atol) {
  return close_impl(what, got, want, n, rtol, atol);
}
bool expect_close(const std::string& what, const float* got, const double* want, int64_t n,
                  double rtol, double atol) {
  return close_impl(what, got, want, n, rtol, atol);
}

bool throws(ErrorCode want, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.code() == want;
  }
  return false;
}

void expect_true(bool cond, const std::string& what) {
  if (!cond) report_failure(what);
}

void expect_guards(const Guarded& g, const std::string& what) {
  if (!g.guards_intact()) report_failure(what + ": wrote outside its output (guard bytes changed)");
}

void for_each_isa(const std::function<void(Isa)>& fn) {
  const Isa saved = active_isa();
  for (int level = 0; level <= static_cast<int>(detected_isa()); ++level) {
    set_active_isa(static_cast<Isa>(level));
    fn(static_cast<Isa>(level));
  }
  set_active_isa(saved);
}

void expect_same_across_threads(const std::string& what,
                                const std::function<std::vector<float>()>& run) {
  const int saved = num_threads();
  std::vector<float> base;
  for (int th : {1, 2, 3}) {
    set_num_threads(th);
    std::vector<float> out = run();
    if (th == 1) base = out;
    else
      expect_true(out.size() == base.size() &&
                      std::memcmp(out.data(), base.data(), out.size() * sizeof(float)) == 0,
                  what + ": result differs between 1 and " + std::to_string(th) + " threads");
  }
  set_num_threads(saved);
}

std::vector<double> to_double(const float* p, int64_t n) { return std::vector<double>(p, p + n); }
std::vector<float> to_float(const double* p, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i]);
  return out;
}

void fd_check(const std::string& what, std::vector<double>& x,
              const std::function<double(const std::vector<double>&)>& loss, const float* grad,
              int samples, Rand& rng, double h, double rtol, double atol) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<int64_t> idx;
  if (samples >= n) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    for (int s = 0; s < samples; ++s) idx.push_back(rng.index(n));
  }
  int bad = 0;
  std::ostringstream os;
  for (int64_t i : idx) {
    const double saved = x[i];
    x[i] = saved + h;
    const double up = loss(x);
    x[i] = saved - h;
    const double down = loss(x);
    x[i] = saved;
    const double num = (up - down) / (2 * h), ana = grad[i];
    if (!(std::fabs(num - ana) <= atol + rtol * std::fabs(num))) {
      if (bad++ < 3) os << " [" << i << "] numeric " << num << " analytic " << ana << ";";
    }
  }
  if (bad) report_failure(what + ": finite differences disagree at " + std::to_string(bad) + "/" +
                          std::to_string(idx.size()) + " coordinates:" + os.str());
}

std::string shape_str(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  for (auto d : dims) s += (s.size() > 1 ? "," : "") + std::to_string(d);
  return s + "]";
}

}  // namespace reca::test
