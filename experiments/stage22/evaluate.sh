#!/usr/bin/env bash
# Stage 22's evaluation, two lanes side by side, one thread each (Flex or LibTorch): the
# held-out subjects 13-15 (eval/: box in T1, T2, PD and FLAIR, one point per slice, one box
# -> 3-D, one click -> 3-D) or the choosing subjects 01-02 (selection/: the same T1 rows).
# THRESHOLD is passed to --mask-threshold: `auto` (the model's calibrated thresholds) or
# `sam` (0 everywhere, the control).
# Usage: experiments/stage22/evaluate.sh MODEL BIN eval|selection TAG [THRESHOLD]
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL="$1"; BIN="$2"; WHAT="$3"; TAG="$4"; T="${5:-auto}"
HERE=experiments/stage22; DATA="${BRAINSAM_DATA:-../shared/data}/label_maps"
export OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1
one() { # subjects contrast prompt file
  local cmd=("$BIN" evaluate --backend cpu --model "$MODEL" --mask-threshold "$T"
    --label-maps "$DATA" --subjects "$1" --contrast "$2" --prompt "$3" --seed 0 --axis axial)
  { echo "brainsam ${cmd[*]:1}"; "${cmd[@]}"; } > "$4" 2>&1
}
if [ "$WHAT" = selection ]; then
  S=subject_01,subject_02; D="$HERE/selection"; mkdir -p "$D"
  { one $S t1 box "$D/t1_box_$TAG.txt"; one $S t1 point "$D/t1_point_$TAG.txt"; } &
  { one $S t1 propagate "$D/t1_propagate_$TAG.txt"
    one $S t1 propagate-click "$D/t1_propagate-click_$TAG.txt"; } &
  wait
else
  S=subject_13,subject_14,subject_15; D="$HERE/eval"; mkdir -p "$D"
  { for c in t1 t2 pd; do one $S $c box "$D/${c}_box_$TAG.txt"; done
    one $S t1 propagate "$D/t1_propagate_$TAG.txt"; } &
  { one $S flair box "$D/flair_box_$TAG.txt"
    one $S t1 propagate-click "$D/t1_propagate-click_$TAG.txt"
    one $S t1 point "$D/t1_point_$TAG.txt"; } &
  wait
fi
