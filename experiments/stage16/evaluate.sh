#!/bin/bash
cd /work/main
BIN=target/release/brainsam
one() { # subjects prompt rules out
  local cmd=($BIN evaluate --backend cpu --model weights/brainsam-default.safetensors --label-maps ../shared/data/label_maps --subjects "$1" --contrast t1 --prompt "$2" --seed 0 --axis axial --stop-rules "$3")
  { echo "brainsam ${cmd[*]:1}"; "${cmd[@]}"; } > "$4" 2>&1
}
SEL=subject_01,subject_02; HELD=subject_13,subject_14,subject_15
for p in propagate propagate-click; do
  one $SEL $p default experiments/stage16/sel_${p}_default.txt
  one $SEL $p default,three_planes=1 experiments/stage16/sel_${p}_planes.txt
done
echo done-sel > experiments/stage16/status
for p in propagate propagate-click; do
  one $HELD $p default experiments/stage16/held_${p}_default.txt
  one $HELD $p default,three_planes=1 experiments/stage16/held_${p}_planes.txt
done
echo done-all > experiments/stage16/status
