#!/usr/bin/env bash
# Packaging check: the npm tarball installs and runs with no compiler and no install
# script (npm 11 runs none without approval), builds from source when told to, and a
# broken binary fails with one E_LOAD that names the fix.
#
#   bash test/packaging/run.sh
#
# Steps: `npm run prebuild` + `npm pack`, then in empty temp folders:
#   (a) install the tarball with --ignore-scripts and no toolchain on PATH: `reca info`
#       and one tiny training step run on the prebuilt binary; then again with the
#       install script allowed: it must compile nothing;
#   (b) prebuild removed, toolchain visible: `npm rebuild reca-engine` builds from
#       source (the only source build here) and the step runs on it;
#   (c) garbage in place of the prebuild, no build/: one E_LOAD listing every path
#       tried and the fix.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
T0=$SECONDS

fail() { echo "packaging: FAIL: $*" >&2; exit 1; }
step() { echo; echo "== packaging [$((SECONDS - T0))s] $*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/reca-packaging.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
TUPLE="$(node -p 'process.platform + "-" + process.arch')"

# A PATH with node, npm, npx and sh (npx runs commands through sh) only: no cc, c++,
# g++, make, python3.
NOTOOLS="$WORK/bin"
mkdir -p "$NOTOOLS"
for t in node npm npx sh; do
  ln -s "$(command -v "$t")" "$NOTOOLS/$t"
done
for t in cc c++ g++ gcc make python3 python node-gyp; do
  if PATH="$NOTOOLS" command -v "$t" >/dev/null 2>&1; then fail "$t is still visible on the no-toolchain PATH"; fi
done
no_tools() { env PATH="$NOTOOLS" npm_config_build_from_source=false "$@"; }

NPM_FLAGS=(--no-audit --no-fund --no-package-lock --loglevel=error)

# One `tiny` training step from the current folder; prints the addon path and the loss.
STEP_JS='
const { Model, Trainer, info } = require("reca-engine");
(async () => {
  const m = await Model.create({ preset: "tiny", mode: "mask", seed: 1 });
  const S = m.config.image_size;
  const data = new Uint8Array(2 * S * S * 3).map((_, i) => (i * 37) % 256);
  const t = new Trainer(m, { recipe: "reca", seed: 2 });
  const r = await t.step({ images: { data, shape: [2, S, S, 3] } });
  if (!Number.isFinite(r.loss)) throw new Error("loss is not finite: " + r.loss);
  console.log(JSON.stringify({ addon: info().addonPath, loss: r.loss }));
  t.dispose(); m.dispose();
})().catch((e) => { console.error(e); process.exit(1); });'

new_project() {
  local dir="$WORK/$1"
  mkdir -p "$dir"
  printf '{ "name": "reca-packaging-%s", "version": "1.0.0", "private": true }\n' "$1" >"$dir/package.json"
  echo "$dir"
}

# ---------------------------------------------------------------------------
step "npm run prebuild"
npm run prebuild
ls "prebuilds/$TUPLE/"*.node >/dev/null 2>&1 || fail "npm run prebuild left no prebuilds/$TUPLE/*.node"
ls -l "prebuilds/$TUPLE/"

step "npm pack"
TARBALL="$WORK/$(npm pack --silent --pack-destination "$WORK" | tail -n 1)"
[ -f "$TARBALL" ] || fail "npm pack wrote no tarball"
tar -tzf "$TARBALL" >"$WORK/contents.txt"
grep -q "^package/prebuilds/$TUPLE/.*\.node$" "$WORK/contents.txt" || fail "the tarball has no prebuilds/$TUPLE/*.node"
grep -q '^package/dist/cli.js$' "$WORK/contents.txt" || fail "the tarball has no dist/cli.js"
for m in small-mask tiny-mask; do
  grep -q "^package/models/$m.safetensors$" "$WORK/contents.txt" || fail "the tarball has no shipped base model models/$m.safetensors"
done
if grep -E '^package/(test|tools/reference|native/tests|benchmarks|build|build-[^/]*|bench-out)/|\.(so|a|o)(\.[0-9]+)*$|libcud' "$WORK/contents.txt"; then
  fail "the tarball holds files it should not (above)"
fi
SIZE=$(stat -c %s "$TARBALL")
UNPACKED=$(tar -xzOf "$TARBALL" | wc -c)
echo "tarball: $(basename "$TARBALL"): $SIZE bytes packed ($(awk "BEGIN{printf \"%.2f\", $SIZE/1048576}") MiB), $UNPACKED bytes unpacked, $(wc -l <"$WORK/contents.txt") files"

# ---------------------------------------------------------------------------
step "(a) install with --ignore-scripts and no toolchain on PATH"
A=$(new_project a)
(cd "$A" && no_tools npm install --ignore-scripts "${NPM_FLAGS[@]}" "$TARBALL") || fail "(a) npm install of the tarball failed"
PKG_A="$A/node_modules/reca-engine"
[ ! -e "$PKG_A/build" ] || fail "(a) an install with --ignore-scripts produced build/"
INFO=$(cd "$A" && no_tools npx --no-install reca info --json) || fail "(a) npx reca info --json failed"
echo "$INFO" | node -e '
  const i = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const want = require("path").join(process.argv[1], "prebuilds");
  if (!i.addonPath.startsWith(want)) { console.error("addon loaded from " + i.addonPath + ", not " + want); process.exit(1); }
  console.log("reca info: " + i.addonPath + ", backend " + i.backend + ", isa " + i.cpu.isa);' "$PKG_A" \
  || fail "(a) reca info did not load the prebuilt binary"
(cd "$A" && no_tools node -e "$STEP_JS") || fail "(a) the tiny training step failed on the prebuilt binary"
(cd "$A" && no_tools npx --no-install reca demo --quick --out "$A/demo" >/dev/null) || fail "(a) reca demo --quick failed on the installed package"
node -e 'const r = require(process.argv[1]); if (!(r.before.overall >= 0 && r.after.overall >= 0)) process.exit(1); console.log(`demo --quick: before ${r.before.overall.toFixed(3)}, after ${r.after.overall.toFixed(3)}, ${r.seconds.toFixed(0)} s`)' "$A/demo/report.json" \
  || fail "(a) the quick demo wrote no report with before and after scores"

step "(a) install with the install script allowed and no toolchain: it must compile nothing"
A2=$(new_project a2)
(cd "$A2" && no_tools npm install --foreground-scripts "${NPM_FLAGS[@]}" "$TARBALL") \
  || fail "(a) npm install with its install script failed with a matching prebuild present"
[ ! -e "$A2/node_modules/reca-engine/build" ] || fail "(a) the install script built from source although a prebuild matches"
(cd "$A2" && no_tools node -e "$STEP_JS") || fail "(a) the tiny training step failed after a scripted install"

# ---------------------------------------------------------------------------
step "(c) garbage in place of the prebuild, no build/: one E_LOAD that names the fix"
C=$(new_project c)
(cd "$C" && no_tools npm install --ignore-scripts "${NPM_FLAGS[@]}" "$TARBALL") || fail "(c) npm install of the tarball failed"
PKG_C="$C/node_modules/reca-engine"
rm -rf "$PKG_C/build"
PREBUILT=$(ls "$PKG_C/prebuilds/$TUPLE/"*.node)
for f in $PREBUILT; do echo 'not a shared library' >"$f"; done
(cd "$C" && no_tools node -e '
  const pkg = process.argv[1];
  const path = require("path");
  let err;
  try { require("reca-engine").info(); } catch (e) { err = e; }
  if (!err) { console.error("a garbage prebuild loaded"); process.exit(1); }
  const problems = [];
  if (err.name !== "RecaError" || err.code !== "E_LOAD") problems.push(`error is ${err.name} ${err.code}, not RecaError E_LOAD`);
  const want = [
    ...require("fs").readdirSync(path.join(pkg, "prebuilds", process.argv[2])).map((f) => path.join(pkg, "prebuilds", process.argv[2], f)),
    path.join(pkg, "build", "Release", "reca.node"),
    "npm install-scripts approve reca-engine",
    "npm rebuild reca-engine",
  ];
  for (const w of want) if (!err.message.includes(w)) problems.push(`the message does not name ${w}`);
  if ((err.message.match(/E_LOAD|could not load/g) || []).length !== 1) problems.push("the message is not one E_LOAD error");
  console.log(err.message);
  if (problems.length) { console.error(problems.join("\n")); process.exit(1); }' "$PKG_C" "$TUPLE") \
  || fail "(c) the load error for a broken binary is not the expected E_LOAD"

# ---------------------------------------------------------------------------
step "(b) no prebuild, toolchain visible: npm rebuild reca-engine builds from source"
B=$(new_project b)
(cd "$B" && npm install --ignore-scripts "${NPM_FLAGS[@]}" "$TARBALL") || fail "(b) npm install of the tarball failed"
PKG_B="$B/node_modules/reca-engine"
rm -rf "$PKG_B/prebuilds" "$PKG_B/build"
TB=$SECONDS
(cd "$B" && npm rebuild reca-engine --foreground-scripts --loglevel=error) || fail "(b) npm rebuild reca-engine (source build) failed"
echo "source build: $((SECONDS - TB))s"
[ -f "$PKG_B/build/Release/reca.node" ] || fail "(b) npm rebuild left no build/Release/reca.node"
OUT=$(cd "$B" && node -e "$STEP_JS") || fail "(b) the tiny training step failed on the source build"
echo "$OUT"
case "$OUT" in
  *"$PKG_B/build/Release/reca.node"*) ;;
  *) fail "(b) the step did not run on the source build" ;;
esac

step "done"
echo "packaging: OK in $((SECONDS - T0))s; tarball $SIZE bytes ($(basename "$TARBALL"))"
