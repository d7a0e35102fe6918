#include "model/alignment.h"

#include <algorithm>
#include <cmath>

namespace reca::model {

void pool_visible(const float* states, const uint8_t* pad, int64_t B, int64_t L, int64_t W,
                  double* pooled, int64_t* count) {
  for (int64_t b = 0; b < B; ++b) {
    double* out = pooled + b * W;
    std::fill(out, out + W, 0.0);
    int64_t n = 0;
    for (int64_t i = 0; i < L; ++i) {
      if (pad[b * L + i]) continue;
      const float* row = states + (b * L + i) * W;
      for (int64_t k = 0; k < W; ++k) out[k] += row[k];
      ++n;
    }
    for (int64_t k = 0; k < W; ++k) out[k] /= static_cast<double>(n);
    count[b] = n;
  }
}

namespace {
// x / |x| and |x| of each row.
void normalize_rows(const double* x, int64_t B, int64_t W, std::vector<double>& unit,
                    std::vector<double>& norm) {
  unit.resize(static_cast<size_t>(B * W));
  norm.resize(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    double s = 0;
    for (int64_t k = 0; k < W; ++k) s += x[b * W + k] * x[b * W + k];
    norm[b] = std::sqrt(s);
    for (int64_t k = 0; k < W; ++k) unit[b * W + k] = x[b * W + k] / norm[b];
  }
}

// d(x/|x|) back to dx: (du − u (u·du)) / |x|.
void normalize_backward(const double* unit, const double* norm, const double* du, int64_t B,
                        int64_t W, double* dx) {
  for (int64_t b = 0; b < B; ++b) {
    double dot = 0;
    for (int64_t k = 0; k < W; ++k) dot += unit[b * W + k] * du[b * W + k];
    for (int64_t k = 0; k < W; ++k)
      dx[b * W + k] = (du[b * W + k] - unit[b * W + k] * dot) / norm[b];
  }
}
}  // namespace

double info_nce(const double* a, const double* b, const uint8_t* same, int64_t B, int64_t W,
                double* da, double* db) {
  std::vector<double> ua, na, ub, nb;
  normalize_rows(a, B, W, ua, na);
  normalize_rows(b, B, W, ub, nb);
  const double inv_t = 1.0 / kAlignTemperature;
  std::vector<double> s(static_cast<size_t>(B * B));
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < B; ++j) {
      double d = 0;
      for (int64_t k = 0; k < W; ++k) d += ua[i * W + k] * ub[j * W + k];
      s[i * B + j] = d * inv_t;
    }
  auto in = [&](int64_t i, int64_t j) { return i == j || !same[i * B + j]; };
  // ds accumulates dL/ds over both directions; each direction's softmax minus
  // its one-hot, scaled by 1/(2B).
  std::vector<double> ds(static_cast<size_t>(B * B), 0.0);
  const double w = 1.0 / (2.0 * static_cast<double>(B));
  double loss = 0;
  for (int dir = 0; dir < 2; ++dir) {
    for (int64_t i = 0; i < B; ++i) {
      // dir 0: row i (image i among captions); dir 1: column i (caption i among images).
      auto at = [&](int64_t j) -> int64_t { return dir == 0 ? i * B + j : j * B + i; };
      double mx = -INFINITY;
      for (int64_t j = 0; j < B; ++j)
        if (dir == 0 ? in(i, j) : in(j, i)) mx = std::max(mx, s[at(j)]);
      double z = 0;
      for (int64_t j = 0; j < B; ++j)
        if (dir == 0 ? in(i, j) : in(j, i)) z += std::exp(s[at(j)] - mx);
      loss += w * (std::log(z) + mx - s[at(i)]);
      for (int64_t j = 0; j < B; ++j)
        if (dir == 0 ? in(i, j) : in(j, i)) ds[at(j)] += w * std::exp(s[at(j)] - mx) / z;
      ds[at(i)] -= w;
    }
  }
  std::vector<double> dua(static_cast<size_t>(B * W), 0.0), dub(static_cast<size_t>(B * W), 0.0);
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < B; ++j) {
      const double g = ds[i * B + j] * inv_t;
      if (g == 0) continue;
      for (int64_t k = 0; k < W; ++k) {
        dua[i * W + k] += g * ub[j * W + k];
        dub[j * W + k] += g * ua[i * W + k];
      }
    }
  normalize_backward(ua.data(), na.data(), dua.data(), B, W, da);
  normalize_backward(ub.data(), nb.data(), dub.data(), B, W, db);
  return loss;
}

void unpool_visible(const double* dpooled, const uint8_t* pad, const int64_t* count, int64_t B,
                    int64_t L, int64_t W, float scale, float* dstates) {
  for (int64_t b = 0; b < B; ++b) {
    const double f = static_cast<double>(scale) / static_cast<double>(count[b]);
    for (int64_t i = 0; i < L; ++i) {
      float* row = dstates + (b * L + i) * W;
      if (pad[b * L + i]) {
        std::fill(row, row + W, 0.0f);
        continue;
      }
      for (int64_t k = 0; k < W; ++k) row[k] = static_cast<float>(dpooled[b * W + k] * f);
    }
  }
}

}  // namespace reca::model
