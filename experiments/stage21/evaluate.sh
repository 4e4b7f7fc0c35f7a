#!/usr/bin/env bash
# Stage 21's evaluation, two lanes side by side, one LibTorch thread each: subjects 01-02 for
# choosing (selection/: box and one click -> 3-D, T1), or the held-out 13-15 for the report
# (eval/: box in T1, T2, PD and FLAIR, one point per slice, one box -> 3-D, one click -> 3-D).
# Usage: experiments/stage21/evaluate.sh MODEL [BIN] [selection|eval] [TAG]
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL="$1"; BIN="${2:-target/release/brainsam}"; WHAT="${3:-selection}"; TAG="${4:-s21}"
HERE=experiments/stage21; DATA="${BRAINSAM_DATA:-../shared/data}/label_maps"
one() { # subjects contrast prompt file
  local cmd=("$BIN" evaluate --backend cpu --model "$MODEL"
    --label-maps "$DATA" --subjects "$1" --contrast "$2" --prompt "$3" --seed 0 --axis axial)
  { echo "brainsam ${cmd[*]:1}"; OMP_NUM_THREADS=1 "${cmd[@]}"; } > "$4" 2>&1
}
mkdir -p "$HERE/selection" "$HERE/eval"
if [ "$WHAT" = selection ]; then
  S=subject_01,subject_02
  one $S t1 box "$HERE/selection/t1_box_$TAG.txt" &
  one $S t1 propagate-click "$HERE/selection/t1_propagate-click_$TAG.txt" &
  wait
else
  S=subject_13,subject_14,subject_15
  { for c in t1 t2 pd; do one $S $c box "$HERE/eval/${c}_box_$TAG.txt"; done
    one $S t1 propagate "$HERE/eval/t1_propagate_$TAG.txt"; } &
  { one $S flair box "$HERE/eval/flair_box_$TAG.txt"
    one $S t1 propagate-click "$HERE/eval/t1_propagate-click_$TAG.txt"
    one $S t1 point "$HERE/eval/t1_point_$TAG.txt"; } &
  wait
fi
