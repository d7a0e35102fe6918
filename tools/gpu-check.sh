#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build the CUDA backend, run the GPU check
# (device, ceilings, CUDA op vs CPU reference, Philox CPU==GPU bits, every
# op of the CUDA backend vs cpu_backend(), one Trainer step of a tiny model per
# mode × task CPU vs GPU and GPU twice (bits), timings at the base preset
# shapes), then the CPU kernel tests. Needs CUDA 12+/13 (nvcc), CMake >= 3.18,
# a C++17 compiler; ninja is used when present; no Node.js.
# Everything is logged under $OUT (default ./gpu-check-out): gpu-check.log
# (this script), build.log, reca_gpu_check.stdout, gpu_check.json and
# gpu_check.log (the check program: every check with its error and tolerance,
# then the PASS/FAIL table), reca_tests.log.
# Environment: OUT (output dir), RECA_CUDA_ARCHS (default 90: Hopper; e.g.
# "80;90"), RECA_GPU_CHECK_ARGS (extra arguments, e.g. --checks-only to skip
# the timings), JOBS (build parallelism, default all cores).
# Exit status: 0 when everything passed; 3 build failed; otherwise the first
# failing step's status (reca_gpu_check: 1 a check failed, 2 no GPU / CUDA error).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
: > "$LOG"
log() { echo "$@" | tee -a "$LOG"; }
run_logged() {  # run_logged FILE CMD...: output to the terminal, $LOG and FILE; returns CMD's status
  local file="$1"; shift
  "$@" 2>&1 | tee -a "$LOG" "$file"
  return "${PIPESTATUS[0]}"
}

# nvcc where CMake can see it.
if ! command -v nvcc >/dev/null 2>&1; then
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin /opt/cuda/bin; do
    if [ -x "$d/nvcc" ]; then export PATH="$d:$PATH"; break; fi
  done
fi
log "== $(date -u +%FT%TZ) on $(hostname)"
log "== source: $(git rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout') $(git status --porcelain 2>/dev/null | grep -q . && echo '(uncommitted changes)')"
log "== nvcc: $(command -v nvcc || echo 'NOT FOUND')"
{ nvcc --version 2>&1 | tail -2; cmake --version 2>&1 | head -1; c++ --version 2>&1 | head -1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv 2>&1
} | tee -a "$LOG"
if ! command -v nvcc >/dev/null 2>&1; then
  log "nvcc not found: the CUDA toolkit is needed to build the GPU check"; exit 3
fi

START=$(date +%s)
ARCHS="${RECA_CUDA_ARCHS:-90}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 8)}"
GEN=()
if [ ! -f build-gpu/CMakeCache.txt ] && command -v ninja >/dev/null 2>&1; then GEN=(-G Ninja); fi
log "== configure + build (build-gpu, Release, CUDA architectures $ARCHS, $JOBS jobs)"
if ! run_logged "$OUT/build.log" cmake -S . -B build-gpu ${GEN[@]+"${GEN[@]}"} -DCMAKE_BUILD_TYPE=Release -DRECA_CUDA=ON \
     "-DCMAKE_CUDA_ARCHITECTURES=$ARCHS"; then
  log "configure failed (see $OUT/build.log)"; exit 3
fi
if ! run_logged "$OUT/build.log" cmake --build build-gpu -j "$JOBS" --target reca_gpu_check reca_tests; then
  log "build failed (see $OUT/build.log; is nvcc found by CMake? reca_gpu_check is built only with CUDA)"; exit 3
fi
log "== build took $(( $(date +%s) - START )) s"

log "== reca_gpu_check"
# shellcheck disable=SC2086
run_logged "$OUT/reca_gpu_check.stdout" timeout 420 build-gpu/reca_gpu_check --out "$OUT" ${RECA_GPU_CHECK_ARGS:-}
GPU_RC=$?
log "== reca_gpu_check exit status $GPU_RC"

log "== reca_tests (CPU kernels)"
run_logged "$OUT/reca_tests.log" timeout 240 build-gpu/reca_tests
TEST_RC=$?
log "== reca_tests exit status $TEST_RC; total $(( $(date +%s) - START )) s"

if [ "$GPU_RC" -ne 0 ]; then exit "$GPU_RC"; fi
exit "$TEST_RC"
