#!/usr/bin/env bash
# Logic check of the CUDA backend without a GPU: compiles native/cuda/*.cu (not
# matmul.cu, whose tensor-core PTX has no CPU form: matmul becomes the CPU
# SGEMM) as C++ against a small CPU emulation of the CUDA runtime and device
# language (cuda_runtime.h here: a block's threads are std::threads with real
# barriers for __syncthreads / __syncwarp / shuffles; blocks run in turn;
# "device" memory is host memory), links reca_gpu_check against it and runs
# its backend sections (every Backend op vs cpu_backend(), the whole-model
# parity and run-to-run bits).
#
# What it catches: indexing, bounds, tails, grid-stride and reduction logic,
# barrier placement, launch geometry. What it cannot: the device's own float
# functions (expf, tanhf, ... here are glibc's), FMA contraction by nvcc,
# memory-model or timing issues, resource limits. A pass here is not a GPU pass:
# run tools/gpu-check.sh on a GPU for that.
#
# Usage: bash tools/cuda-emu/run.sh [reca_gpu_check args]   (default: --checks-only --no-kernels)
# Needs g++ >= 11 (C++20 <barrier>), CMake for the CPU library (build-native/), python3.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${EMU_DIR:-$root/build-emu}"
mkdir -p "$work/include" "$work/overlay/cuda" "$work/src" "$work/obj"
cp "$here/cuda_runtime.h" "$work/include/"
if [ ! -f "$root/build-native/libreca_native.a" ]; then
  cmake -S "$root" -B "$root/build-native" -DRECA_CUDA=OFF -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$root/build-native" -j "${JOBS:-2}" --target reca_native
for f in "$root"/native/cuda/*.cuh; do python3 "$here/rewrite.py" "$f" "$work/overlay/cuda/$(basename "$f")"; done
srcs=()
for f in "$root"/native/cuda/*.cu; do
  b="$(basename "$f" .cu)"
  [ "$b" = matmul ] && continue
  python3 "$here/rewrite.py" "$f" "$work/src/$b.cpp"
  srcs+=("$work/src/$b.cpp")
done
flags=(-std=c++20 -O1 -g -w -I"$work/include" -I"$work/overlay" -I"$root/native" -DRECA_CUDA_ARCHS='"cpu-emulation"')
objs=()
for f in "${srcs[@]}" "$here/emu.cpp" "$here/matmul_emu.cpp"; do
  o="$work/obj/$(basename "$f" .cpp).o"
  g++ "${flags[@]}" -c "$f" -o "$o" &
  objs+=("$o")
  while [ "$(jobs -r | wc -l)" -ge "${JOBS:-2}" ]; do wait -n; done
done
wait
g++ -std=c++20 -O1 -g -w -I"$root/native" -DRECA_ISA_LEVEL=0 -c "$root/native/gpu_check/gpu_check.cpp" -o "$work/obj/gpu_check.o"
g++ -o "$work/reca_gpu_check_emu" "${objs[@]}" "$work/obj/gpu_check.o" "$root/build-native/libreca_native.a" -lpthread -ldl
if [ $# -eq 0 ]; then set -- --checks-only --no-kernels; fi
exec "$work/reca_gpu_check_emu" "$@"
