#!/usr/bin/env bash
# Stage 15: trained propagation (the neighbour's mask as SAM's dense prompt, the model ending
# the structure) against box propagation with hand-set stop rules, same budget and seed.
# Two runs side by side from the shipped model, stage 10's recipe, one LibTorch thread each;
# b adds dense-prompted neighbour samples. BIN: a `--features libtorch` release build.
# Usage: experiments/stage15/train.sh OUT_DIR [STEPS] [BIN]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="$1"; STEPS="${2:-1600}"; BIN="${3:-target/release/brainsam}"
DATA="${BRAINSAM_DATA:-../shared/data}/label_maps"
run() { # name extra-flags...
  local name="$1"; shift
  OMP_NUM_THREADS=1 "$BIN" train --backend cpu \
    --model weights/brainsam-default.safetensors --full \
    --label-maps "$DATA" --subjects "$(printf 'subject_%02d,' $(seq 1 12) | sed 's/,$//')" \
    --out "$OUT/$name" --steps "$STEPS" --seed 41 \
    --contrasts t1,t2,random,random --slices-per-step 2 --slices-per-volume 24 \
    --prompts-per-slice 6 --point-prob 0.4 --focus-prob 0.85 \
    --correction-prob 0.25 --lr 0.0003 --warmup 50 --data-threads 1 --checkpoint-every 100 \
    --max-minutes 95 "$@" > "$OUT/$name.log" 2>&1
}
mkdir -p "$OUT"
run a_box_rules --neighbour-prob 0.2 &
run b_dense --neighbour-prob 0.5 --dense-prompt-prob 1.0 &
wait
