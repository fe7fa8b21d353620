#!/usr/bin/env bash
# Runs the findings' studies (docs/findings.md) at the CPU preset with 3 seeds, one after
# another, on the real CIFAR-10 images, through the ordinary study scripts; then copies each
# finished study's small result files to findings/<study>/. Minutes to an hour each on 2 cores.
#
#   setsid bash findings/run.sh > findings/runs/run.log 2>&1 &
#   bash findings/run.sh --resume      # continue studies that were interrupted
#   bash findings/run.sh sharing       # only the studies named
set -u
cd "$(dirname "$0")/.."
DATA=${ENSEMBLE_DATA_DIR:-../shared/data/cifar10}
RUNS=$PWD/findings/runs
mkdir -p "$RUNS"
RESUME=()
STUDIES=()
for a in "$@"; do
    if [ "$a" = --resume ]; then RESUME=(--resume); else STUDIES+=("$a"); fi
done
[ ${#STUDIES[@]} -gt 0 ] || STUDIES=(optimizers sharing ensemble_size alpha_gamma)
# What each study adds to `--preset cpu --seeds 3` (docs/findings.md says why).
declare -A EXTRA=(
    [optimizers]="--epochs 10"  # curves long enough to show a train-validation gap
    [sharing]=""
    [ensemble_size]=""
    [alpha_gamma]="--no-asha"  # the full 5 x 5 grid: every cell gets every epoch
)
status=0
for s in "${STUDIES[@]}"; do
    echo "=== $s: $(date -u +%FT%TZ)"
    # shellcheck disable=SC2086
    python "tune_jobs/$s.py" --preset cpu --seeds 3 ${EXTRA[$s]} --data-dir "$DATA" \
        --storage-path "$RUNS" --name "$s" "${RESUME[@]}"
    rc=$?
    echo "=== $s: exit $rc at $(date -u +%FT%TZ)"
    if [ $rc -eq 0 ] || [ $rc -eq 1 ]; then  # 1: some trials errored; their rows say which
        mkdir -p "findings/$s"
        cp "$RUNS/$s"/{results.parquet,history.parquet,study.json} "findings/$s/"
    fi
    [ $rc -eq 0 ] || status=$rc
done
exit $status
