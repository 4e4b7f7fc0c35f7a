#!/usr/bin/env bash
# Builds the browser app into a self-contained static folder (default dist/) that any
# file server can serve: the crate for wasm32 (release; WebGPU plus the CPU fallback),
# wasm-bindgen's JS glue with its TypeScript declarations (pkg/brainsam.d.ts: the engine's
# methods and replies), wasm-opt, the page with its vendored viewer libraries, the sample MRI
# and the bundled model.
# Usage: scripts/build_web.sh [OUT]   (BRAINSAM_WASM_OPT=0 skips wasm-opt)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-dist}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
WASM="$TARGET_DIR/wasm32-unknown-unknown/release/brainsam.wasm"
CACHE=target/web-cache
export PATH="$HOME/.cargo/bin:$PATH"

nice -n 10 cargo build -p brainsam --lib --release --target wasm32-unknown-unknown \
  --no-default-features --features wgpu,cpu

rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp/pkg" "$CACHE"
wasm-bindgen --target web --out-dir "$OUT.tmp/pkg" "$WASM"
BG="$OUT.tmp/pkg/brainsam_bg.wasm"
if [ "${BRAINSAM_WASM_OPT:-1}" != 0 ]; then
  # npm's binaryen: Debian's (108) writes modules that browsers reject. Same input, same
  # output, so the optimised module is cached by the input's hash (wasm-opt takes minutes).
  key="$CACHE/opt-$(sha256sum "$BG" | cut -c1-16).wasm"
  if [ ! -f "$key" ]; then
    node_modules/.bin/wasm-opt -O2 --enable-bulk-memory --enable-nontrapping-float-to-int \
      --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
      "$BG" -o "$key.tmp"
    mv "$key.tmp" "$key"
  fi
  cp "$key" "$BG"
fi

cp www/index.html www/style.css www/*.js "$OUT.tmp/"
# Libraries the page loads on first use: niivue's self-contained ES module (the 3-D view) and
# dcm2niix's wasm build with its worker (DICOM series in).
mkdir -p "$OUT.tmp/vendor/dcm2niix"
cp node_modules/@niivue/niivue/dist/index.js "$OUT.tmp/vendor/niivue.js"
D=node_modules/@niivue/dcm2niix/dist
cp "$D/index.jpeg.js" "$D/worker.jpeg.js" "$D/dcm2niix.jpeg.js" "$D/dcm2niix.jpeg.wasm" "$OUT.tmp/vendor/dcm2niix/"
scripts/fetch_sample.sh "$OUT.tmp/sample/mni152_t1.nii.gz"
if [ -f weights/brainsam-default.safetensors ]; then
  mkdir -p "$OUT.tmp/weights"
  cp weights/brainsam-default.safetensors "$OUT.tmp/weights/"
  [ -f weights/manifest.json ] && cp weights/manifest.json "$OUT.tmp/weights/"
fi
node scripts/build_info.mjs "$OUT.tmp"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
raw=$(stat -c %s "$OUT/pkg/brainsam_bg.wasm")
gz=$(gzip -9c "$OUT/pkg/brainsam_bg.wasm" | wc -c)
echo "built $OUT: wasm $((raw / 1024)) KiB ($((gz / 1024)) KiB gzipped)"
