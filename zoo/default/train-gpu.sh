#!/usr/bin/env bash
# A fourth, longer mapping phase of the default bundle on a lent GPU, in one call of under ten
# minutes (the device tool's limit): it builds a larger training set there with every CPU core,
# times a few steps, sizes the phase to the time left and trains from the shipped mapping.
# Inputs come in $IN (made here by `zoo/default/gpu_inputs.py`): the training photographs, the
# shipped VAEs and mapping, and wheels for what the GPU image lacks. zoo/default/gpu-run/README.md
# has the command that ran it and what came out; docs/benchmarks.md what it did to quality.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORKERS=${WORKERS:-12}      # DataLoader workers
CKPT=${CKPT:-250}           # steps between checkpoints (what a run stopped by the time limit keeps)
. zoo/default/gpu-common.sh

phase() {  # phase STEPS DECAY_START DECAY_STEPS > yaml
    cat <<EOF
# Fourth mapping phase of the default bundle, on a GPU: from default-mapping-ft2, the same
# fidelity-first losses, full 256 px tiles, batch $BATCH, rate held then decayed to zero.
preset: default
steps: $1
batch_size: $BATCH
size: $SIZE
lr: 0.0001
decay_start: $2
decay_steps: $3
beta1: 0.9
map_l1_weight: 10.0
map_image_l1_weight: 60.0
gan_weight: 0.0
fm_weight: 0.0
sample_every: 1000000
ckpt_every: $CKPT
EOF
}
train() {  # train YAML OUT NAME SECONDS
    timeout "$4" $DG train mapping --config "$1" --pairs x-gpu --vae1 default-vae1 --vae2 default-vae2 \
        --init default-mapping-ft2 --out "$2" --name "$3" --device "$DEVICE" --workers "$WORKERS"
}

# time a few steps, then size the phase to what is left, unless STEPS is given. The probe's median
# step (0.11 s on an H200) came out a third below the long run's (0.17 s, waiting on data for
# 45 % of it), hence the factor 1.6.
if [ -z "${STEPS:-}" ]; then
phase 40 1000000 0 > "$WORK/probe.yaml"
train "$WORK/probe.yaml" "$WORK/runs/probe" probe $((BUDGET - SECONDS))
STEP_S=$($PY -c "import csv, statistics as s; r = list(csv.DictReader(open('$WORK/runs/probe/losses.csv'))); print(s.median(float(x['seconds']) for x in r[15:]))")
LEFT=$((BUDGET - SECONDS - 45))
STEPS=$($PY -c "print(max(50, int($LEFT / ($STEP_S * 1.6))))")
echo "[$SECONDS s] probe: $STEP_S s/step; $LEFT s left -> $STEPS steps"
fi
HOLD=$((STEPS * 3 / 10))
phase "$STEPS" "$HOLD" "$((STEPS - HOLD))" > "$DEST/mapping-gpu.yaml"
R=$WORK/runs/mapping-gpu
train "$DEST/mapping-gpu.yaml" "$R" default-mapping-gpu $((BUDGET - SECONDS - 10)) || echo "training stopped early (exit $?)"
echo "[$SECONDS s] training done"

last=$(ls "$R"/samples/*.png 2>/dev/null | tail -1 || true)
[ -z "$last" ] || cp "$last" "$DEST/samples-last.png"
keep "$R" default-mapping-gpu
echo "[$SECONDS s] all done"
