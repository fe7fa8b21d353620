#!/usr/bin/env bash
# The upgrade check, and the one way the lock (constraints.txt) is refreshed.
#
#   bash benchmarks/upgrade_check.sh            # newest versions the ranges allow; lock rewritten if green
#   bash benchmarks/upgrade_check.sh --check    # the same, the lock left as it is
#
# Builds a fresh virtual environment (build/upgrade-venv, git-ignored; UPGRADE_VENV moves it)
# with the newest release of every dependency that pyproject.toml's ranges allow (no lock),
# prints what moved against the lock, then runs there the fast tests and the smoke study of
# every study script (tests/tune_jobs/test_smoke.py: each study end to end on a local Ray, the
# multi-objective search included). Only when all of them pass does it write the environment's
# exact versions to constraints.txt, the lock README's commands and CI install from; run the
# whole suite against the new lock (`bash .ci/run`) before committing it.
#
# A machine's own pip configuration still applies (an index, find-links, a global constraint
# such as a cap on torch): the check sees what a new user of that machine would get.
set -euo pipefail
cd "$(dirname "$0")/.."

write_lock=1
case "${1:-}" in
    "") ;;
    --check) write_lock=0 ;;
    *) echo "error: option ${1@Q}: allowed: --check, or nothing" >&2; exit 2 ;;
esac

venv=${UPGRADE_VENV:-build/upgrade-venv}
lock=constraints.txt
start=$(date +%s)

rm -rf "$venv"
python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
# --upgrade-strategy eager: every dependency at the newest release the ranges allow.
"$py" -m pip install -q --upgrade --upgrade-strategy eager -e ".[test]"
installed=$(date +%s)
echo "upgrade-check: installed in $((installed - start)) s into $venv"

fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
{
    echo "# The lock: the exact versions the test suite passed with (pip constraints: a package"
    echo "# listed here is installed at this version if at all). Written by"
    echo "# benchmarks/upgrade_check.sh after its tests passed, on $(date -u +%Y-%m-%d),"
    echo "# $("$py" -c 'import platform; print("Python", platform.python_version(), platform.machine())')."
    echo "# Do not edit by hand: rerun the check (README, 'Installing')."
    "$py" -m pip freeze --exclude-editable --all | grep -v -E '^(pip|setuptools|wheel)=='
} >"$fresh"

echo "upgrade-check: versions that differ from the lock (lock -> newest):"
"$py" - "$lock" "$fresh" <<'PY'
import sys
from pathlib import Path


def pins(path):
    p = Path(path)
    lines = p.read_text().splitlines() if p.is_file() else []
    return dict(line.split("==", 1) for line in lines if "==" in line and line[0] != "#")


old, new = pins(sys.argv[1]), pins(sys.argv[2])
for name in sorted({*old, *new}):
    if old.get(name) != new.get(name):
        print(f"  {name:28} {old.get(name, '(new)')} -> {new.get(name, '(gone)')}")
PY

# The fast tests, then every study's smoke run; both on the newest versions.
export PATH="$PWD/$venv/bin:$PATH" ENSEMBLE_LOCK="$fresh"  # tests/test_lock.py reads the new lock
"$py" -m pytest -q -m "not slow" -p no:cacheprovider
"$py" -m pytest -q tests/tune_jobs/test_smoke.py -p no:cacheprovider
echo "upgrade-check: tests passed in $(($(date +%s) - installed)) s"

if [ "$write_lock" = 1 ]; then
    cp "$fresh" "$lock"
    echo "upgrade-check: wrote $lock; run 'bash .ci/run' (the whole suite) before committing it"
    git --no-pager diff --stat -- "$lock" || true
else
    echo "upgrade-check: --check: $lock left as it is"
fi
