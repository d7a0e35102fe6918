#!/usr/bin/env bash
# On a machine without Node.js: run the reca CLI from the stage tools/gpu-stage.sh made.
#   bash tools/gpu-run.sh ARGS...     e.g. bash tools/gpu-run.sh pretrain --device cuda --out $OUT/m.safetensors
# Unpacks .gpu-stage/node.xz once (xz, or Python's lzma where xz is missing) and runs
# `reca ARGS` with the staged addon; paths in ARGS are relative to the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=$PWD/.gpu-stage
[ -f "$STAGE/node.xz" ] || { echo "gpu-run: no $STAGE/node.xz: run tools/gpu-stage.sh first and carry .gpu-stage" >&2; exit 2; }
BIN=${TMPDIR:-/tmp}/reca-node
if [ ! -x "$BIN/node" ]; then
  mkdir -p "$BIN"
  if command -v xz >/dev/null 2>&1; then
    xz -dc "$STAGE/node.xz" > "$BIN/node.part"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$STAGE/node.xz" "$BIN/node.part"
  fi
  chmod +x "$BIN/node.part"
  mv "$BIN/node.part" "$BIN/node"
fi
export PATH="$BIN:$PATH"
export RECA_ADDON_PATH="$STAGE/reca.node"
exec "$BIN/node" "$STAGE/dist/cli.js" "$@"
