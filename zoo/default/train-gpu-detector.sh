#!/usr/bin/env bash
# The defect detector trained far longer than the CPU allows, on a lent GPU in one call of under
# ten minutes, on `x-gpu` (see gpu-common.sh), batches of 32 whole 256 px tiles, the rate held
# for 30 % of the steps, then decayed to zero; one run after the other:
#   default-scratch-gpu       the shipped architecture (base 16, depth 3), 6,000 steps from default-scratch-ft
#   default-scratch-gpu-deep  depth 5 (a receptive field about four times wider), 3,500 steps from scratch
# INIT_A and NAME_A continue from another detector, STEPS_B=0 skips the second run: the shipped
# default-scratch-gpu5 is default-scratch-gpu trained on by four such runs (gpu-run-detector/README.md).
# A run the time limit stops keeps its last checkpoint. Inputs in $IN come from
# `python -m zoo.default.gpu_inputs WORK .gpu default-scratch-ft --webp`; zoo/default/gpu-run-detector/
# has the commands that ran and what came out, docs/benchmarks.md what it did.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORKERS=${WORKERS:-14}      # DataLoader workers
CKPT=${CKPT:-250}
STEPS_A=${STEPS_A:-6000}    # 0.027 s a step on an H100 with the data keeping up
STEPS_B=${STEPS_B:-3500}    # 0.029 s; 0 skips the second run and gives the first the whole budget
INIT_A=${INIT_A:-default-scratch-ft}
NAME_A=${NAME_A:-default-scratch-gpu}
PRECISION=${PRECISION:-fp32}  # bf16: bfloat16 autocast (weights stay fp32); not yet timed on a GPU, see gpu-run-detector/README.md
. zoo/default/gpu-common.sh
# For the trainings, not the dataset built above. Two runs side by side, 7 workers each and no thread
# limits, waited on data 97 % of the time (0.84 s a step); one run with 14 workers and these limits
# did not (gpu-run-detector/README.md).
export OMP_NUM_THREADS=1 ZARR_THREADING__MAX_WORKERS=1

phase() {  # phase STEPS LR [YAML LINE] > yaml
    local hold=$(($1 * 3 / 10))
    cat <<EOF
# Detector on a GPU: batch $BATCH of $SIZE px tiles, rate $2 held for $hold steps, then decayed to zero.
preset: default
seed: 4
steps: $1
batch_size: $BATCH
size: $SIZE
lr: $2
decay_start: $hold
decay_steps: $(($1 - hold))
beta1: 0.9
sample_every: 1000000
ckpt_every: $CKPT
${3:-}
EOF
}
train() {  # train YAML NAME SECONDS [--init MODEL]
    timeout "$3" $DG train scratch --config "$1" --pairs x-gpu --out "$WORK/runs/$2" --name "$2" \
        --device "$DEVICE" --workers "$WORKERS" --precision "$PRECISION" "${@:4}" || echo "$2 stopped early (exit $?)"
}

phase "$STEPS_A" 0.0002 > "$DEST/scratch-gpu.yaml"
phase "$STEPS_B" 0.0005 "model_overrides: {scratch_unet: {depth: 5}}" > "$DEST/scratch-gpu-deep.yaml"
if [ "$STEPS_B" -gt 0 ]; then LIMIT_A=$(((BUDGET - SECONDS) * 6 / 10)); else LIMIT_A=$((BUDGET - SECONDS - 15)); fi
train "$DEST/scratch-gpu.yaml" "$NAME_A" "$LIMIT_A" --init "$INIT_A"
keep "$WORK/runs/$NAME_A" "$NAME_A"
echo "[$SECONDS s] first run done"
[ "$STEPS_B" -gt 0 ] || exit 0
train "$DEST/scratch-gpu-deep.yaml" default-scratch-gpu-deep $((BUDGET - SECONDS - 15))
keep "$WORK/runs/default-scratch-gpu-deep" default-scratch-gpu-deep
echo "[$SECONDS s] all done"
