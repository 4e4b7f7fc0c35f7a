#!/usr/bin/env bash
# Evaluates the bundled model on the held-out label maps (never seen in training): box prompts
# in the trained contrasts (t1, t2) and in unseen ones (pd, flair), one point per slice in t1;
# `contrast:prompt:flip` runs also average each window with its mirror (--flip-average);
# `contrast:prompt:unnamed` ones do not tell the model which structure a prompt is for.
# Writes $EVAL_OUT/<contrast>_<prompt>.txt (default target/eval; the shipped model's are in
# experiments/stage10/eval/); scripts/bundle_model.py puts them in the manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BRAINSAM_BIN:-target/release/brainsam}"
DATA="${BRAINSAM_DATA:-../shared/data}/label_maps"
SUBJECTS="${HELD_OUT:-subject_13,subject_14,subject_15}"
MODEL="${MODEL:-weights/brainsam-default.safetensors}"
OUT="${EVAL_OUT:-target/eval}"
mkdir -p "$OUT"
for spec in ${RUNS:-t1:box t2:box pd:box flair:box t1:point t1:box:flip pd:box:flip t1:point:flip}; do
  IFS=: read -r c p mode <<<"$spec"
  flags=() name="${c}_${p}"
  case "${mode:-}" in
    flip) flags=(--flip-average) name="${name}_flip" ;;
    unnamed) flags=(--unnamed) name="${name}_unnamed" ;;
  esac
  echo "== $c $p ${mode:-}"
  {
    echo "brainsam evaluate --model $MODEL ${ADAPTER:+--adapter $ADAPTER }--label-maps $DATA --subjects $SUBJECTS --contrast $c --prompt $p --seed 0 --axis axial ${flags[*]:-}"
    "$BIN" evaluate --model "$MODEL" ${ADAPTER:+--adapter "$ADAPTER"} --label-maps "$DATA" \
      --subjects "$SUBJECTS" --contrast "$c" --prompt "$p" --seed 0 --axis axial ${flags[@]+"${flags[@]}"}
  } | tee "$OUT/${name}.txt" | tail -1
done
