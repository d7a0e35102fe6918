// Dense symmetric solves in float64 for the probe scripts (ridge regressions).

/** A = L Lᵀ for symmetric positive definite A (D×D): L is written over A's lower triangle. */
function choleskyFactor(a, D) {
  for (let j = 0; j < D; j++) {
    let s = a[j * D + j];
    for (let k = 0; k < j; k++) s -= a[j * D + k] ** 2;
    const d = Math.sqrt(Math.max(s, 1e-12));
    a[j * D + j] = d;
    for (let i = j + 1; i < D; i++) {
      let t = a[i * D + j];
      for (let k = 0; k < j; k++) t -= a[i * D + k] * a[j * D + k];
      a[i * D + j] = t / d;
    }
  }
}

/** Solve A w = b for symmetric positive definite A (D×D, factored in place), several right-hand sides b (D×K, overwritten). */
function choleskySolve(a, b, D, K) {
  choleskyFactor(a, D);
  for (let c = 0; c < K; c++) {
    for (let i = 0; i < D; i++) { let t = b[i * K + c]; for (let k = 0; k < i; k++) t -= a[i * D + k] * b[k * K + c]; b[i * K + c] = t / a[i * D + i]; }
    for (let i = D - 1; i >= 0; i--) { let t = b[i * K + c]; for (let k = i + 1; k < D; k++) t -= a[k * D + i] * b[k * K + c]; b[i * K + c] = t / a[i * D + i]; }
  }
  return b;
}

module.exports = { choleskyFactor, choleskySolve };
