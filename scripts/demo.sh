#!/usr/bin/env bash
# The demo. For now (model core and data pipeline landed, browser app still to come): builds
# the CLI, writes a small randomly initialised SAM checkpoint, prints its geometry and
# parameter counts, converts it to fp16, and synthesises a T2 image from a real label map
# with a montage PNG. The browser app (issue 5) will replace this with a served page.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${BRAINSAM_DEMO_OUT:-target/demo}"
mkdir -p "$OUT"
# Same features and profile as the tests, so one build serves both (deps are optimised in dev).
cargo build -p brainsam --features wgpu --bin brainsam
BIN=target/debug/brainsam
$BIN init --embed-dim 256 --depth 6 --num-heads 8 --global-attn-indexes 2,5 --image-size 256 --seed 7 --out "$OUT/sam_small.safetensors"
$BIN info "$OUT/sam_small.safetensors"
$BIN convert "$OUT/sam_small.safetensors" "$OUT/sam_small_f16.safetensors" --half
DATA="${BRAINSAM_DATA:-../shared/data}"
if [ -f "$DATA/label_maps/subject_01.nii.gz" ]; then
  $BIN synth --label-map "$DATA/label_maps/subject_01.nii.gz" --contrast t2 --seed 3 --out "$OUT/synth_t2" --montage
fi
