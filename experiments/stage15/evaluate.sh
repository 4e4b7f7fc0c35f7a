#!/usr/bin/env bash
# Stage 15's evaluation, two lanes side by side (one LibTorch thread each): run a with the
# hand-set stop rules, run b with its own (trained) end; selection on 01–02, report on 13–15.
# Usage: experiments/stage15/evaluate.sh OUT_DIR [BIN]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="$1"; BIN="${2:-target/release/brainsam}"; HERE=experiments/stage15
DATA="${BRAINSAM_DATA:-../shared/data}/label_maps"
HELD=subject_13,subject_14,subject_15
one() { # model subjects prompt file [stop rules]
  local cmd=("$BIN" evaluate --backend cpu --model "$1" --label-maps "$DATA" --subjects "$2"
    --contrast t1 --prompt "$3" --seed 0 --axis axial ${5:+--stop-rules "$5"})
  { echo "brainsam ${cmd[*]:1}"; OMP_NUM_THREADS=1 "${cmd[@]}"; } > "$4" 2>&1
}
mkdir -p "$HERE/selection" "$HERE/eval"
A="$OUT/a_box_rules/model.safetensors"; B="$OUT/b_dense/model.safetensors"
lane_a() {
  one "$A" subject_01,subject_02 propagate "$HERE/selection/t1_propagate_s15a.txt"
  for p in propagate propagate-click box; do one "$A" "$HELD" "$p" "$HERE/eval/t1_${p}_s15a.txt"; done
  one weights/brainsam-default.safetensors "$HELD" propagate-click "$HERE/eval/t1_propagate-click_shipped.txt"
}
lane_b() {
  one "$B" subject_01,subject_02 propagate "$HERE/selection/t1_propagate_s15b.txt"
  for p in propagate propagate-click box; do one "$B" "$HELD" "$p" "$HERE/eval/t1_${p}_s15b.txt"; done
}
lane_a & lane_b & wait
