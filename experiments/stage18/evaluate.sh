#!/bin/bash
# Stage 18: walks bounded by the seed's cross sections against the hand-set stop rules.
# Usage: experiments/stage18/evaluate.sh sel|held "RULES_A RULES_B ..." [prompts]
# BIN (default target/lt/release/brainsam, the LibTorch build) and MODEL may be set.
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/lt/release/brainsam}
MODEL=${MODEL:-weights/brainsam-default.safetensors}
DATA=${BRAINSAM_DATA:-../shared/data}/label_maps
case $1 in
  sel) SUBJ=subject_01,subject_02; DIR=experiments/stage18/selection ;;
  held) SUBJ=subject_13,subject_14,subject_15; DIR=experiments/stage18/eval ;;
esac
for rules in $2; do
  for p in ${3:-propagate-click propagate}; do
    name=$(echo "$rules" | tr ',=' '_-')
    cmd=($BIN evaluate --backend cpu --model "$MODEL" --label-maps "$DATA" --subjects "$SUBJ" \
      --contrast t1 --prompt "$p" --seed 0 --axis axial --stop-rules "$rules")
    { echo "brainsam ${cmd[*]:1}"; OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "${cmd[@]}"; } > "$DIR/t1_${p}_${name}.txt" 2>&1
    tail -1 "$DIR/t1_${p}_${name}.txt" | sed "s/^/$p $rules: /"
  done
done
