#!/usr/bin/env bash
# The whole GPU check of the training-cost issue in one script, under 8 minutes on one GPU:
#   1. the CUDA tests (pytest -m cuda);
#   2. target 1: the fast-weight price on the device (benchmarks/fast_weights.py);
#   3. target 2: deep ensembles against M singles (benchmarks/deep_ensemble.py);
#   4. targets 3-4: vgg11 single / BE4 / BE8 images/s in fp32, bf16, bf16 + channels_last and
#      compiled, and the fraction of the GPU's peak bf16 FLOP/s (benchmarks/precision.py);
#   5. target 5: the loader on the device (benchmarks/loader.py);
#   6. a 2-epoch alpha_gamma study of 4 trials sharing one GPU (--gpus-per-trial 0.25).
# Each step's output goes to $OUT/<step>.log (the device tool's $OUT, else benchmarks/gpu-out)
# and the script prints a last line with each step's exit status.
#
#   bash benchmarks/gpu.sh                  # on a GPU machine
#   bash benchmarks/gpu.sh --device cpu     # that it runs: --quick everything, no GPU needed
#
# On the lent H200 machines the image has torch but not ivon-opt, click, ray, plotly or optuna:
# carry their wheels (benchmarks/README.md, "GPU check") and the CIFAR-10 images the loader and
# study steps read (ENSEMBLE_DATA_DIR); steps whose packages or data are missing fail alone.
set -u
cd "$(dirname "$0")/.."
DEVICE=cuda
[ "${1:-}" = "--device" ] && DEVICE=${2:?--device needs a value}
QUICK=()
GPUS=0.25
SCALE=1  # the time limits are a GPU's; 2 busy CPU cores need far longer even with --quick
ARCH=()
if [ "$DEVICE" = cpu ]; then QUICK=(--quick); GPUS=0; SCALE=5; ARCH=(--arch simple_cnn); fi
OUT=${OUT:-benchmarks/gpu-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)  # absolute: the study's --storage-path below must not prefix $PWD to it
DATA=${ENSEMBLE_DATA_DIR:-../shared/data/cifar10}
export PYTHONUNBUFFERED=1
summary=()

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, remember the status
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date -u +%T)): $*"
    timeout $((limit * SCALE)) "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 15 "$OUT/$name.log"
    echo "=== $name: exit $rc"
    summary+=("$name=$rc")
}

{ nvidia-smi || true; python -c "import torch; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available() and torch.cuda.get_device_name())"; } > "$OUT/machine.log" 2>&1
cat "$OUT/machine.log"

step cuda_tests 90 python -m pytest -q -m cuda tests/core/test_cuda.py \
    tests/core/test_corruptions.py tests/core/test_data.py -p no:cacheprovider
step fast_weights 75 python benchmarks/fast_weights.py --device "$DEVICE" "${QUICK[@]}"
step deep_ensemble 75 python benchmarks/deep_ensemble.py --device "$DEVICE" "${QUICK[@]}"
step precision 120 python benchmarks/precision.py --device "$DEVICE" "${QUICK[@]}" "${ARCH[@]}"
step loader 45 python benchmarks/loader.py --device "$DEVICE" --data-dir "$DATA" "${QUICK[@]}"
rm -rf "$OUT/ray/gpu_check"  # a rerun on the same machine starts the study afresh
step study 75 python tune_jobs/alpha_gamma.py --smoke --epochs 2 --no-asha \
    --set "device=$DEVICE" --gpus-per-trial "$GPUS" --data-dir "$DATA" \
    --storage-path "$OUT/ray" --name gpu_check
echo "gpu.sh on $DEVICE: ${summary[*]}"
