#!/usr/bin/env bash
# Stage 19: fine features (model::fine_features) added to the shipped model, then stage 17a's
# run exactly (same seed, recipe and 2 400 steps from the shipped model, copies), so that
# 17a is its control. One run, LibTorch on every core.
# Usage: experiments/stage19/train.sh OUT_DIR [STEPS] [BIN]   (BIN: a `--features libtorch` build)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="$1"; STEPS="${2:-2400}"; BIN="${3:-target/release/brainsam}"
DATA="${BRAINSAM_DATA:-../shared/data}/label_maps"
mkdir -p "$OUT"
"$BIN" train --backend cpu --model weights/brainsam-default.safetensors --full --fine-features \
  --label-maps "$DATA" --subjects "$(printf 'subject_%02d,' $(seq 1 12) | sed 's/,$//')" \
  --out "$OUT/fine" --steps "$STEPS" --seed 51 --slice-gap 0 \
  --contrasts t1,t2,random,random --slices-per-step 2 --slices-per-volume 24 \
  --prompts-per-slice 6 --point-prob 0.4 --neighbour-prob 0.2 --focus-prob 0.85 \
  --correction-prob 0.25 --lr 0.0003 --warmup 50 --data-threads 1 --checkpoint-every 100 \
  --max-minutes 95 > "$OUT/fine.log" 2>&1
