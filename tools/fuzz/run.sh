#!/usr/bin/env bash
# Fuzzes every target in native/fuzz/ for SECONDS each (default 60) with
# libFuzzer + ASan + UBSan (clang), starting from the committed corpus.
#   bash tools/fuzz/run.sh [SECONDS] [TARGET...]
# CI runs a short pass; a long run is the same command with a bigger number.
# A crash, a sanitizer report, a leak or an input slower than 10 s stops the
# run with exit 1 and leaves the input in build-fuzz/artifacts/: copy it into
# native/fuzz/corpus/<target>/ (it then replays in every `ctest`), then fix.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
shift || true
cxx="$(command -v clang++-14 || command -v clang++ || true)"
cc="$(command -v clang-14 || command -v clang || true)"
if [ -z "$cxx" ]; then
  echo "fuzz: clang is not installed (Debian: apt-get install clang libfuzzer-14-dev)" >&2
  exit 1
fi
cmake -S . -B build-fuzz -DRECA_FUZZ=ON -DRECA_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in native/fuzz/fuzz_*.cpp; do t="$(basename "$f" .cpp)"; targets+=("${t#fuzz_}"); done
fi
cmake --build build-fuzz -j2 --target $(printf 'reca_fuzz_%s ' "${targets[@]}") >/dev/null
mkdir -p build-fuzz/artifacts
for t in "${targets[@]}"; do
  work="build-fuzz/corpus/$t"
  mkdir -p "$work"
  echo "fuzz $t: ${seconds} s from $(ls native/fuzz/corpus/$t | wc -l) seeds"
  # New inputs go to the scratch corpus; the committed one is read only.
  ./build-fuzz/reca_fuzz_"$t" "$work" "native/fuzz/corpus/$t" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -max_len=131072 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/artifacts/$t-" 2>&1 | grep -E "^#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY|Test unit written" || true
  if ls build-fuzz/artifacts/"$t"-* >/dev/null 2>&1; then
    echo "fuzz $t: FAILED, inputs in build-fuzz/artifacts/ (copy into native/fuzz/corpus/$t/ as regressions)" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, no crash, leak, sanitizer report or slow input"
