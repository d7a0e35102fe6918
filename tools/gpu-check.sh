#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build the CUDA backend, run the GPU check
# (device, ceilings, CUDA op vs CPU reference, Philox CPU==GPU bits, timings at
# the base preset shapes), then the CPU kernel tests. Everything is logged
# under $OUT (default ./gpu-check-out): gpu-check.log (this script),
# gpu_check.json and gpu_check.log (the check program), reca_tests.log.
# Exit status: 0 when everything passed; 3 build failed; otherwise the first
# failing step's status.
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
log "== nvcc: $(command -v nvcc || echo 'NOT FOUND')"
{ nvcc --version 2>&1 | tail -2; cmake --version 2>&1 | head -1; c++ --version 2>&1 | head -1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv 2>&1
} | tee -a "$LOG"
if ! command -v nvcc >/dev/null 2>&1; then
  log "nvcc not found: the CUDA toolkit is needed to build the GPU check"; exit 3
fi

START=$(date +%s)
log "== configure + build (build-gpu, Release, sm_90)"
if ! run_logged "$OUT/build.log" cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90; then
  log "configure failed (see $OUT/build.log)"; exit 3
fi
if ! run_logged "$OUT/build.log" cmake --build build-gpu -j16 --target reca_gpu_check reca_tests; then
  log "build failed (see $OUT/build.log)"; exit 3
fi
log "== build took $(( $(date +%s) - START )) s"

log "== reca_gpu_check"
run_logged "$OUT/reca_gpu_check.stdout" timeout 300 build-gpu/reca_gpu_check --out "$OUT"
GPU_RC=$?
log "== reca_gpu_check exit status $GPU_RC"

log "== reca_tests (CPU kernels)"
run_logged "$OUT/reca_tests.log" timeout 240 build-gpu/reca_tests
TEST_RC=$?
log "== reca_tests exit status $TEST_RC; total $(( $(date +%s) - START )) s"

if [ "$GPU_RC" -ne 0 ]; then exit "$GPU_RC"; fi
exit "$TEST_RC"
