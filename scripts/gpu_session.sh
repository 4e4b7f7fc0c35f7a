#!/bin/bash
# The device script for GPU training (first used for stage 4 in session 4): run from the
# repository root on a lent GPU machine with .dev/ carried: .dev/brainsam-{vulkan,wgpu}.xz
# (stripped release builds with --features vulkan / wgpu, xz-compressed; either or both),
# .dev/data/ (the label maps), .dev/torch_sam_anchor.py, .gl/ (the Vulkan loader .debs) and
# .whl/ (segment-anything); optionally BASE=.dev/model.safetensors (the last stage's fp32
# weights; default: the bundled fp16 file) and EXTRA="..." (more `train` flags).
# Writes everything to $OUT.
exec > >(tee $OUT/log.txt) 2>&1
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
BUDGET=${BUDGET:-560}   # seconds for the whole script
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
KINDS=""
for k in vulkan wgpu; do
  [ -f .dev/brainsam-$k.xz ] && xz -dc .dev/brainsam-$k.xz > /tmp/brainsam-$k && chmod +x /tmp/brainsam-$k && KINDS="$KINDS $k"
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
# SPIR-V kernels (vulkan feature) first; WGSL (wgpu feature) if they fail on this driver.
for k in $KINDS; do
  B=/tmp/brainsam-$k
  echo "== [$(el)s] our bench ($k), ViT-B random weights"
  timeout 130 $B bench --backend wgpu --geometry vit_b --sizes 1024 --train 256x16 --reps 3 | tee $OUT/bench_$k.jsonl
  grep -q lora_train_step $OUT/bench_$k.jsonl && break
  echo "bench with $k failed (rc $?)"
done
echo "== [$(el)s] PyTorch anchor"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
timeout 120 python3 .dev/torch_sam_anchor.py > $OUT/anchor.txt 2>&1; tail -14 $OUT/anchor.txt
echo "== [$(el)s] stage-4 training with $B"
# The recipe of the CPU stages 8-9 (windows around prompts, half the volumes domain-randomised),
# at SLICES slices per step: on a GPU a larger step costs little more time than a small one.
C="--model ${BASE:-weights/brainsam-default.safetensors} --full --label-maps .dev/data
  --subjects subject_01,subject_02,subject_03,subject_04,subject_05,subject_06,subject_07,subject_08,subject_09,subject_10,subject_11,subject_12
  --contrasts t1,t2,random,random --focus-prob 0.85 --slices-per-step ${SLICES:-16}
  --prompts-per-slice 6 --slices-per-volume 24 --point-prob 0.4 --neighbour-prob 0.2
  --correction-prob 0.25 --lr ${LR:-3e-4} --lr-floor 0.05 --warmup 100 --backend wgpu
  --seed ${SEED:-20} --out /tmp/s4 ${EXTRA:-}"
# Pilot: the run's first steps (kernels tuned, steps/s measured); the real run resumes it
# with the step count that fits (data and warm-up do not depend on the total).
timeout 100 $B train $C --steps 100000 --checkpoint-every 0 --max-minutes 1.0 | tail -2
if [ ! -f /tmp/s4/checkpoint/state.json ] && [ $B != /tmp/brainsam-wgpu ] && [ -x /tmp/brainsam-wgpu ]; then
  echo "pilot failed with $B: WGSL build instead"; B=/tmp/brainsam-wgpu; rm -rf /tmp/s4
  timeout 100 $B train $C --steps 100000 --checkpoint-every 0 --max-minutes 1.0 | tail -2
fi
RATE=$(awk -F, -v k=${SLICES:-16} 'NR>1{s[NR]=$1; r[NR]=$4} END{n=NR; a=int(n/2); if(n<6){print 0; exit}
  ta=s[a]*k/r[a]; tb=s[n]*k/r[n]; print (s[n]-s[a])/(tb-ta)}' /tmp/s4/log.csv)
# Too few pilot steps to measure (kernels still tuning): guess, --max-minutes still ends it.
[ "$RATE" = 0 ] && RATE=${GUESS_RATE:-0.8}
DONE=$(tail -1 /tmp/s4/log.csv | cut -d, -f1)
LEFT=$(( BUDGET - $(el) - 30 ))
STEPS=$(awk -v r=$RATE -v t=$LEFT -v d=$DONE 'BEGIN{print d + int(r*t*0.9) + 1}')
echo "pilot: $DONE steps, $RATE steps/s after tuning; $LEFT s left -> $STEPS steps in all"
timeout $(( LEFT + 15 )) $B train $C --resume --steps $STEPS --checkpoint-every 200 \
  --max-minutes $(awk -v t=$LEFT 'BEGIN{print (t-10)/60}') | tail -2
echo "== [$(el)s] done"
cp /tmp/s4/config.json /tmp/s4/log.csv /tmp/s4/curve.png $OUT/ 2>/dev/null
M=/tmp/s4/model.safetensors; [ -f $M ] || M=/tmp/s4/checkpoint/model.safetensors
sha256sum $M; split -b 15M $M $OUT/model.part.   # files back are at most 16 MiB each
ls -la $OUT
