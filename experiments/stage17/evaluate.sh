#!/usr/bin/env bash
# Stage 17's evaluation, both runs side by side, one LibTorch thread each: subjects 01-02 for
# choosing (selection/: box and one click -> 3-D, T1), then the held-out 13-15 for the report
# (eval/: box, point, one box -> 3-D and one click -> 3-D in T1; box in PD, never trained on).
# Usage: experiments/stage17/evaluate.sh OUT_DIR [BIN] [selection|eval]   (OUT_DIR as given to train.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="$1"; BIN="${2:-target/release/brainsam}"; WHAT="${3:-selection}"; HERE=experiments/stage17
DATA="${BRAINSAM_DATA:-../shared/data}/label_maps"
one() { # run subjects contrast prompt file
  local cmd=("$BIN" evaluate --backend cpu --model "$OUT/$1/model.safetensors"
    --label-maps "$DATA" --subjects "$2" --contrast "$3" --prompt "$4" --seed 0 --axis axial)
  { echo "brainsam ${cmd[*]:1}"; OMP_NUM_THREADS=1 "${cmd[@]}"; } > "$5" 2>&1
}
lane() { # run letter
  if [ "$WHAT" = selection ]; then
    for p in box propagate-click; do
      one "$1" subject_01,subject_02 t1 "$p" "$HERE/selection/t1_${p}_s17$2.txt"
    done
  else
    for spec in t1:box t1:point t1:propagate t1:propagate-click pd:box; do
      IFS=: read -r c p <<<"$spec"
      one "$1" subject_13,subject_14,subject_15 "$c" "$p" "$HERE/eval/${c}_${p}_s17$2.txt"
    done
  fi
}
mkdir -p "$HERE/selection" "$HERE/eval"
lane a_copies a & lane b_seated_gap2 b & wait
