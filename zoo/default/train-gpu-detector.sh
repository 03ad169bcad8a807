#!/usr/bin/env bash
# The defect detector trained far longer than the CPU allows, on a lent GPU in one call of under
# ten minutes: two runs side by side on the one card, on `x-gpu` (see gpu-common.sh), batches of
# whole 256 px tiles, rate held then decayed to zero:
#   a  default-scratch-gpu       the shipped architecture (base 16, depth 3), from default-scratch-ft
#   b  default-scratch-gpu-deep  depth 5 (a receptive field about four times wider), from scratch
# A probe of 40 steps of both at once sizes the two runs to the time left. Inputs in $IN come from
# `python -m zoo.default.gpu_inputs WORK .gpu default-scratch-ft`; zoo/default/gpu-run-detector/
# has the command that ran it and what came out, docs/benchmarks.md what it did.
set -euo pipefail
cd "$(dirname "$0")/../.."
BATCH=${BATCH:-32}
SIZE=${SIZE:-256}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-7}       # DataLoader workers per run
CKPT=${CKPT:-500}
. zoo/default/gpu-common.sh

phase() {  # phase STEPS LR [YAML LINE] > yaml
    local hold=$(($1 * 3 / 10))
    cat <<EOF
# Detector on a GPU: batch $BATCH of $SIZE px tiles, rate $2 held for $hold steps, then decayed to zero.
preset: default
seed: 3
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
DEEP="model_overrides: {scratch_unet: {depth: 5}}"
train() {  # train YAML NAME SECONDS [--init MODEL]
    timeout "$3" $DG train scratch --config "$1" --pairs x-gpu --out "$WORK/runs/$2" --name "$2" \
        --device "$DEVICE" --workers "$WORKERS" "${@:4}"
}
median_step() {  # seconds per step of a probe, past its warm-up
    $PY -c "import csv, statistics as s; r = list(csv.DictReader(open('$WORK/runs/$1/losses.csv'))); print(s.median(float(x['seconds']) for x in r[15:]))"
}

if [ -z "${STEPS_A:-}" ]; then
phase 40 0.0002 > "$WORK/probe-a.yaml"
phase 40 0.0005 "$DEEP" > "$WORK/probe-b.yaml"
# (waits name their jobs: a bare `wait` would also wait for the log's tee, which never ends)
train "$WORK/probe-a.yaml" probe-a 120 --init default-scratch-ft & A=$!
train "$WORK/probe-b.yaml" probe-b 120 & B=$!
wait $A $B
SA=$(median_step probe-a); SB=$(median_step probe-b)
LEFT=$((BUDGET - SECONDS - 40))
STEPS_A=$($PY -c "print(max(50, int($LEFT / ($SA * 1.3))))")
STEPS_B=$($PY -c "print(max(50, int($LEFT / ($SB * 1.3))))")
echo "[$SECONDS s] probes (side by side): a $SA s/step, b $SB s/step; $LEFT s left -> $STEPS_A and $STEPS_B steps"
fi
phase "$STEPS_A" 0.0002 > "$DEST/scratch-gpu.yaml"
phase "$STEPS_B" 0.0005 "$DEEP" > "$DEST/scratch-gpu-deep.yaml"
T=$((BUDGET - SECONDS - 15))
{ train "$DEST/scratch-gpu.yaml" default-scratch-gpu "$T" --init default-scratch-ft || echo "run a stopped early (exit $?)"; } & A=$!
{ train "$DEST/scratch-gpu-deep.yaml" default-scratch-gpu-deep "$T" || echo "run b stopped early (exit $?)"; } & B=$!
wait $A $B
echo "[$SECONDS s] training done"
keep "$WORK/runs/default-scratch-gpu" default-scratch-gpu
keep "$WORK/runs/default-scratch-gpu-deep" default-scratch-gpu-deep
echo "[$SECONDS s] all done"
