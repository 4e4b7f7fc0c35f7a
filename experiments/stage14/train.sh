#!/usr/bin/env bash
# Stage 14: 2.5-D input (slices k-2, k, k+2) against three copies of slice k, same budget.
# Two runs side by side from the shipped model, stage 10's recipe, one LibTorch thread each.
# 14c: the shipped model converted first (`convert --slice-gap 2`: the patch embedding seated
# on the centre slice, so it starts computing what it did on copies), then trained at gap 2.
# Usage: experiments/stage14/train.sh OUT_DIR [STEPS] [ab|c]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="$1"; STEPS="${2:-700}"; WHICH="${3:-ab}"
DATA="${BRAINSAM_DATA:-../shared/data}/label_maps"
run() { # name gap [start model] [threads]
  OMP_NUM_THREADS="${4:-1}" target/release/brainsam train --backend cpu \
    --model "${3:-weights/brainsam-default.safetensors}" --full \
    --label-maps "$DATA" --subjects "$(printf 'subject_%02d,' $(seq 1 12) | sed 's/,$//')" \
    --out "$OUT/$1" --steps "$STEPS" --seed 31 --slice-gap "$2" \
    --contrasts t1,t2,random,random --slices-per-step 2 --slices-per-volume 24 \
    --prompts-per-slice 6 --point-prob 0.4 --neighbour-prob 0.2 --focus-prob 0.85 \
    --correction-prob 0.25 --lr 0.0003 --warmup 50 --data-threads 1 --checkpoint-every 100 \
    > "$OUT/$1.log" 2>&1
}
mkdir -p "$OUT"
if [ "$WHICH" = c ]; then
  target/release/brainsam convert weights/brainsam-default.safetensors "$OUT/c_start.safetensors" --slice-gap 2
  run c_seated_gap2 2 "$OUT/c_start.safetensors" 2
else
  run a_copies 0 & run b_gap2 2 & wait
fi
