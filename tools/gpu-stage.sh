#!/usr/bin/env bash
# Stage what the reca CLI needs on a GPU machine that has no Node.js, in the ignored folder
# .gpu-stage/: Node's binary (xz), the CUDA build of the addon, dist/, package.json,
# node-gyp-build, and the models a run names. On that machine, `bash tools/gpu-run.sh ARGS`
# unpacks Node and runs `reca ARGS` from the stage (e.g. `pretrain --device cuda ...`).
#
#   bash tools/gpu-stage.sh [--cpu-addon] [MODEL.safetensors ...]
#       --cpu-addon  stage build/Release/reca.node instead of the CUDA build (a dry run on a
#                    machine without a GPU: everything but the device is exercised)
#       MODEL        checkpoints the run reads (copied to .gpu-stage/models/, where the CLI
#                    looks for shipped bases)
#   bash tools/gpu-stage.sh --park | --unpark
#       move test/fixtures/ and models/ (about 62 MB) out of the checkout, to
#       ../reca-parked/, and back. When the copy of the working tree a remote run takes is
#       capped (64 MiB, say), the tracked tree alone nearly fills it: stage first (the
#       stage copies the models it names), park, run, unpark.
#
# sharp (libvips, about 20 MB) is not staged: commands that read or write image files (a
# folder of images, the demo's PNG grids) need it; pretraining on the built-in world does not.
# Prints what would travel (tracked and untracked-not-ignored files present, plus the stage).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STAGE=$ROOT/.gpu-stage
PARKED=$ROOT/../reca-parked

travel_bytes() {
  local tree stage
  tree=$(git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
    | xargs -0 -r stat -c %s | awk '{s += $1} END {print s + 0}')
  stage=$( [ -d "$STAGE" ] && du -sbL "$STAGE" | cut -f1 || echo 0)
  echo "working tree $tree bytes + stage $stage bytes = $((tree + stage)) bytes ($(( (tree + stage) / 1048576 )) MiB)"
}

case "${1:-}" in
  --park)
    mkdir -p "$PARKED"
    for d in test/fixtures models; do
      if [ -e "$PARKED/$(basename $d)" ]; then echo "gpu-stage: $PARKED/$(basename $d) exists; unpark first" >&2; exit 1; fi
    done
    mv test/fixtures "$PARKED/fixtures"
    mv models "$PARKED/models"
    echo "parked test/fixtures and models in $PARKED (bash tools/gpu-stage.sh --unpark puts them back)"
    travel_bytes
    exit 0 ;;
  --unpark)
    [ -d "$PARKED/fixtures" ] && [ ! -e test/fixtures ] && mv "$PARKED/fixtures" test/fixtures
    [ -d "$PARKED/models" ] && [ ! -e models ] && mv "$PARKED/models" models
    rmdir "$PARKED" 2>/dev/null || true
    git status --short -- test/fixtures models
    echo "unparked"
    exit 0 ;;
esac

ADDON=""
if [ "${1:-}" = "--cpu-addon" ]; then
  shift
  ADDON=build/Release/reca.node
  [ -f "$ADDON" ] || npm run build:native
else
  ADDON=prebuilds-cuda/$(node -p 'process.platform + "-" + process.arch')/reca.node
  if [ ! -f "$ADDON" ] || [ -n "$(find native CMakeLists.txt -newer "$ADDON" -print -quit)" ]; then
    command -v nvcc >/dev/null || { echo "gpu-stage: nvcc not found: the CUDA build needs the CUDA toolkit" >&2; exit 3; }
    npm run prebuild:cuda
  fi
fi
npm run build:ts >/dev/null

rm -rf "$STAGE"
mkdir -p "$STAGE/node_modules" "$STAGE/models"
cp -r dist package.json "$STAGE/"
cp -r node_modules/node-gyp-build "$STAGE/node_modules/"
cp "$ADDON" "$STAGE/reca.node"
xz -T0 -6 -c "$(command -v node)" > "$STAGE/node.xz"
for m in "$@"; do cp "$m" "$STAGE/models/"; done
node -e "
  const a = require(process.argv[1]); const i = a.info();
  console.log('staged addon ' + i.version + ': CUDA ' + (i.cuda.compiled ? 'compiled for ' + i.cuda.architectures : 'not compiled in'));
" "$STAGE/reca.node"
echo "staged in $STAGE: $(du -sh "$STAGE" | cut -f1) (node.xz $(du -h "$STAGE/node.xz" | cut -f1))"
travel_bytes
