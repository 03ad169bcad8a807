# Set-up shared by the GPU scripts (sourced, not run): paths and limits, the wheels the GPU image
# lacks, the models carried in $IN, and `x-gpu`, a larger `train-mix` training set built there
# with every CPU core from the photographs carried in $IN/clean-train.
IN=${IN:-.gpu}
WORK=${WORK:-/tmp/daguerre-gpu}
DEST=${OUT:-$WORK/out}
BUDGET=${BUDGET:-540}       # seconds for the whole script
COUNT=${COUNT:-16000}       # samples in the training set built there
BATCH=${BATCH:-32}          # training batches of whole tiles
SIZE=${SIZE:-256}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
export DAGUERRE_HOME=$WORK/home PYTHONUNBUFFERED=1
mkdir -p "$DAGUERRE_HOME/models" "$DEST"
exec > >(tee "$DEST/gpu.log") 2>&1

if ! $PY -c "import zarr, dask" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "$IN"/whl/*.whl
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DG="$PY cli.py"
cp "$IN"/models/* "$DAGUERRE_HOME/models/"
$PY -c "import torch, numpy, cv2, zarr, dask, skimage; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', '| numpy', numpy.__version__, '| cv2', cv2.__version__, '| zarr', zarr.__version__, '| dask', dask.__version__, '| skimage', skimage.__version__)"
# nproc honours OMP_NUM_THREADS, which a GPU image may set (and which once made this 1 in call 5)
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
echo "cpus $CPUS"

# the training set: same recipe as `x`, more samples, another seed
$DG dataset create x-gpu --recipe zoo/default/train-mix.yaml --source "$IN/clean-train" --count "$COUNT" \
    --size 256 --seed 11 --workers "$CPUS" --scheduler processes
$DG dataset info x-gpu --json > "$DEST/x-gpu-info.json"
echo "[$SECONDS s] dataset done"

# keep NAME: register a run's last checkpoint when the time limit stopped it before the end
keep() {  # keep RUN_DIR NAME
    local m=$DAGUERRE_HOME/models/$2
    if ! [ -f "$m.safetensors" ] && [ -f "$1/last.safetensors" ]; then
        $PY -c "from zoo.train import export_state; export_state('$1/last', '$2')"
    fi
    if [ -f "$m.safetensors" ]; then cp "$m".{safetensors,json} "$DEST/"; fi
    cp "$1/losses.csv" "$DEST/$2.losses.csv" 2>/dev/null || true
    cp "$1/losses.png" "$DEST/$2.losses.png" 2>/dev/null || true
}
