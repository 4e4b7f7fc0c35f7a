#!/usr/bin/env bash
# Stage 14's evaluation: each run's model on subjects 01–02 (selection/) and on the held-out
# 13–15 (eval/), both runs side by side, one LibTorch thread each.
# Usage: experiments/stage14/evaluate.sh OUT_DIR (as given to train.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="$1"; HERE=experiments/stage14
DATA="${BRAINSAM_DATA:-../shared/data}/label_maps"
one() { # run subjects contrast prompt file
  local cmd=(target/release/brainsam evaluate --backend cpu --model "$OUT/$1/model.safetensors"
    --label-maps "$DATA" --subjects "$2" --contrast "$3" --prompt "$4" --seed 0 --axis axial)
  { echo "brainsam ${cmd[*]:1}"; OMP_NUM_THREADS=1 "${cmd[@]}"; } > "$5" 2>&1
}
all() { # run letter
  one "$1" subject_01,subject_02 t1 box "$HERE/selection/t1_box_s14$2.txt"
  for spec in t1:box t1:point pd:box t1:propagate; do
    IFS=: read -r c p <<<"$spec"
    one "$1" subject_13,subject_14,subject_15 "$c" "$p" "$HERE/eval/${c}_${p}_s14$2.txt"
  done
}
mkdir -p "$HERE/selection" "$HERE/eval"
all a_copies a & all b_gap2 b & wait
