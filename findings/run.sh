#!/usr/bin/env bash
# Runs the findings' studies (docs/findings.md) with 3 seeds, one after another, on the real
# CIFAR-10 images, through the ordinary study scripts, niced; then copies each finished
# study's small result files to findings/<study>/ (--preset cpu, the default: minutes to an
# hour each on 2 cores) or findings/learn/<study>/ (--preset learn: about 2-5 hours each on
# 2 cores at the bf16 speed; tune_jobs/options.py says how each grid was sized).
#
#   setsid bash findings/run.sh > findings/runs/run.log 2>&1 &
#   bash findings/run.sh --resume      # continue studies that were interrupted
#   bash findings/run.sh sharing       # only the studies named
#   setsid bash findings/run.sh --preset learn > findings/runs/learn.log 2>&1 &
#   bash findings/run.sh --preset learn --resume   # continue the interrupted learn studies
#
# The runs go to findings/runs/<study> (cpu) or findings/runs/<study>_learn (learn), which
# git ignores; --resume continues an interrupted one there (the study's own --resume).
#
# The learn preset's plateau check (BatchEnsemble 4, alpha = gamma = 0.5, Adam 3e-3: the
# alpha x gamma study's cell (0.5, 0.5); 12, 20 and 30 epochs, seeds 0-2, each its own cosine
# schedule, two runs at a time), about 1.5 hours on 2 cores for 12 and 20 (measured) and ~50
# minutes more for 30; a finished run is not run again:
#
#   setsid bash findings/run.sh plateau > findings/runs/plateau.log 2>&1 &
#   python benchmarks/plateau.py     # each run's last epoch and the verdict, from findings/plateau
#
# The ensemble has reached its plateau at E epochs when the next length's runs' mean test
# accuracy is within 1 pp of the E-epoch runs' (benchmarks/plateau.py prints the verdicts;
# run 2026-12-03: not reached at 12, +4.1 pp at 20 epochs; benchmarks/README.md, "The learn
# preset"; so the learn preset trains 20 epochs, and 30 says whether 20 is the plateau).
set -u
cd "$(dirname "$0")/.."
DATA=${ENSEMBLE_DATA_DIR:-../shared/data/cifar10}
RUNS=$PWD/findings/runs
PYTHON=${PYTHON:-python}
mkdir -p "$RUNS"
RESUME=()
STUDIES=()
PRESET=cpu
while [ $# -gt 0 ]; do
    case "$1" in
        --resume) RESUME=(--resume) ;;
        --preset) PRESET=${2:?--preset needs cpu or learn}; shift ;;
        *) STUDIES+=("$1") ;;
    esac
    shift
done
case "$PRESET" in
    cpu) SUFFIX="" DEST=findings ;;
    learn) SUFFIX=_learn DEST=findings/learn ;;
    *) echo "error: --preset $PRESET: choose cpu or learn" >&2; exit 2 ;;
esac

plateau() {
    # core.train, one trial per run (no Ray): the learn preset's config, written out.
    mkdir -p "$RUNS/plateau"
    local epochs seed log
    for epochs in 12 20 30; do
        for seed in 0 1 2; do
            log=$RUNS/plateau/be4_epochs${epochs}_seed${seed}.log
            # finished here, or committed in findings/plateau/
            if grep -qs "^epoch=$epochs " "$log" "findings/plateau/${log##*/}"; then continue; fi
            [ "$(jobs -rp | wc -l)" -lt 2 ] || wait -n  # two runs at a time, one per core
            nice -n 10 "$PYTHON" -m core.train --arch simple_cnn_wide --ensemble batch \
                --ensemble-size 4 --alpha 0.5 --gamma 0.5 --optimizer adam --lr 0.003 \
                --schedule cosine --epochs "$epochs" --batch-size 128 --val-fraction 0.1 \
                --split-seed none --seed "$seed" --num-threads 1 --data-dir "$DATA" \
                > "$log" 2>&1 &
        done
    done
    wait
    # the finished runs' logs, for benchmarks/plateau.py and benchmarks/README.md
    mkdir -p findings/plateau
    for log in "$RUNS"/plateau/be4_epochs*_seed*.log; do
        epochs=${log##*_epochs}; epochs=${epochs%%_*}
        if grep -q "^epoch=$epochs " "$log"; then cp "$log" findings/plateau/; fi
    done
}

if [ ${#STUDIES[@]} -eq 0 ]; then
    STUDIES=(optimizers sharing ensemble_size alpha_gamma)
    # the methods study (issue 23) runs at the learn scale only, after the student study's
    [ "$PRESET" = learn ] && STUDIES+=(methods)
fi
# What each study adds to `--preset <preset> --seeds 3` (docs/findings.md says why).
declare -A EXTRA=(
    [cpu:optimizers]="--epochs 10"  # curves long enough to show a train-validation gap
    [cpu:sharing]=""
    [cpu:ensemble_size]=""
    [cpu:alpha_gamma]="--no-asha"  # the full 5 x 5 grid: every cell gets every epoch
    [learn:optimizers]=""  # the preset's 20 epochs
    [learn:sharing]=""
    [learn:ensemble_size]=""
    [learn:alpha_gamma]="--no-asha"  # the full 3 x 3 grid: every cell gets every epoch
    [learn:methods]=""
)
for s in "${STUDIES[@]}"; do  # every name checked before anything runs
    if [ "$s" != plateau ] && [ -z "${EXTRA[$PRESET:$s]+set}" ]; then
        known=$(for k in "${!EXTRA[@]}"; do [ "${k%%:*}" = "$PRESET" ] && echo "${k#*:}"; done)
        echo "error: study $s: not run at --preset $PRESET; allowed: plateau" $known >&2
        exit 2
    fi
done
status=0
for s in "${STUDIES[@]}"; do
    if [ "$s" = plateau ]; then
        echo "=== plateau: $(date -u +%FT%TZ)"
        plateau
        echo "=== plateau: done at $(date -u +%FT%TZ)"
        continue
    fi
    name=$s$SUFFIX
    echo "=== $name: $(date -u +%FT%TZ)"
    # shellcheck disable=SC2086
    nice -n 10 "$PYTHON" "tune_jobs/$s.py" --preset "$PRESET" --seeds 3 ${EXTRA[$PRESET:$s]} \
        --data-dir "$DATA" --storage-path "$RUNS" --name "$name" "${RESUME[@]}"
    rc=$?
    echo "=== $name: exit $rc at $(date -u +%FT%TZ)"
    if [ $rc -eq 0 ] || [ $rc -eq 1 ]; then  # 1: some trials errored; their rows say which
        mkdir -p "$DEST/$s"
        cp "$RUNS/$name"/{results.parquet,history.parquet,study.json} "$DEST/$s/"
    fi
    [ $rc -eq 0 ] || status=$rc
done
exit $status
