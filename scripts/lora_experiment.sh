#!/usr/bin/env bash
# The paper's effect at small scale: LoRA-adapt the bundled model to a contrast it was not
# trained on (adapters on the frozen encoder + prompt encoder + mask decoder), then compare
# held-out box Dice before and after, and report the adapter's size.
# Usage: scripts/lora_experiment.sh [CONTRAST] [STEPS] [OUT]   (defaults: pd 200 target/lora_pd)
set -euo pipefail
cd "$(dirname "$0")/.."
C="${1:-pd}"
STEPS="${2:-200}"
OUT="${3:-target/lora_$C}"
BIN="${BRAINSAM_BIN:-target/release/brainsam}"
DATA="${BRAINSAM_DATA:-../shared/data}/label_maps"
MODEL="${MODEL:-weights/brainsam-default.safetensors}"
TRAIN="${TRAIN_SUBJECTS:-subject_01,subject_02,subject_03,subject_04,subject_05,subject_06,subject_07,subject_08,subject_09,subject_10,subject_11,subject_12}"
export MODEL BRAINSAM_BIN="$BIN"
# The base model's held-out Dice in this contrast (reused when already measured).
[ -f "$OUT/before/${C}_box.txt" ] || RUNS="$C:box" EVAL_OUT="$OUT/before" scripts/eval_bundled.sh
# Trained on the windows the bundled model predicts on (its `brainsam.focus`); on whole
# slices the adapter would learn for inputs it never sees in evaluation.
"$BIN" train --model "$MODEL" --label-maps "$DATA" --subjects "$TRAIN" --contrasts "$C" \
  --focus-prob "${FOCUS_PROB:-0.85}" --steps "$STEPS" --warmup 20 --lr "${LR:-5e-4}" --lora-rank "${RANK:-4}" \
  --lora-targets "${TARGETS:-q,v}" --seed 1 --out "$OUT/run" | tail -1
RUNS="$C:box" ADAPTER="$OUT/run/adapter.safetensors" EVAL_OUT="$OUT/after" scripts/eval_bundled.sh
echo "before: $(tail -1 "$OUT/before/${C}_box.txt")  after: $(tail -1 "$OUT/after/${C}_box.txt")"
ls -l "$OUT/run/adapter.safetensors"
