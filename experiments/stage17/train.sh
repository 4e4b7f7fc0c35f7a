#!/usr/bin/env bash
# Stage 17: 2.5-D input (slices k-2, k, k+2) against three copies of slice k, stage 14's
# question at about three times its budget on the faster LibTorch build. Both runs from the
# shipped model, stage 10's recipe, one LibTorch thread each, side by side; b starts from
# the shipped model seated on the centre slice (`convert --slice-gap 2`, as 14c).
# Usage: experiments/stage17/train.sh OUT_DIR [STEPS] [BIN]   (BIN: a `--features libtorch` build)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="$1"; STEPS="${2:-2000}"; BIN="${3:-target/release/brainsam}"
DATA="${BRAINSAM_DATA:-../shared/data}/label_maps"
run() { # name gap start-model
  OMP_NUM_THREADS=1 "$BIN" train --backend cpu --model "$3" --full \
    --label-maps "$DATA" --subjects "$(printf 'subject_%02d,' $(seq 1 12) | sed 's/,$//')" \
    --out "$OUT/$1" --steps "$STEPS" --seed 51 --slice-gap "$2" \
    --contrasts t1,t2,random,random --slices-per-step 2 --slices-per-volume 24 \
    --prompts-per-slice 6 --point-prob 0.4 --neighbour-prob 0.2 --focus-prob 0.85 \
    --correction-prob 0.25 --lr 0.0003 --warmup 50 --data-threads 1 --checkpoint-every 100 \
    --max-minutes 72 > "$OUT/$1.log" 2>&1
}
mkdir -p "$OUT"
"$BIN" convert weights/brainsam-default.safetensors "$OUT/b_start.safetensors" --slice-gap 2
run a_copies 0 weights/brainsam-default.safetensors &
run b_seated_gap2 2 "$OUT/b_start.safetensors" &
wait
