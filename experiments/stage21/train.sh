#!/usr/bin/env bash
# Stage 21: Polyak averaging (train --average-decay, train::averaging) on a full fine-tune of
# the shipped model at a third of the usual learning rate. One run gives both the weights as
# trained (model.safetensors, the control) and their moving average (model_average.safetensors).
# LibTorch on every core.
# Usage: experiments/stage21/train.sh OUT_DIR [STEPS] [BIN]   (BIN: a `--features libtorch` build)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="$1"; STEPS="${2:-4000}"; BIN="${3:-target/release/brainsam}"
DATA="${BRAINSAM_DATA:-../shared/data}/label_maps"
mkdir -p "$OUT"
"$BIN" train --backend cpu --model weights/brainsam-default.safetensors --full \
  --label-maps "$DATA" --subjects "$(printf 'subject_%02d,' $(seq 1 12) | sed 's/,$//')" \
  --out "$OUT/avg" --steps "$STEPS" --seed 53 --slice-gap 0 \
  --contrasts t1,t2,random,random --slices-per-step 2 --slices-per-volume 24 \
  --prompts-per-slice 6 --point-prob 0.4 --neighbour-prob 0.2 --focus-prob 0.85 \
  --correction-prob 0.25 --lr 0.0001 --warmup 50 --data-threads 1 --checkpoint-every 100 \
  --average-decay 0.999 --max-minutes 100 > "$OUT/avg.log" 2>&1
