"""One command-line style (core.cli): `python -m core.train` and the study scripts take click
options, suggest the option a typo meant, list allowed values in `--help` wrapped to the
terminal, and refuse a bad value in one line with exit status 2; `python -m tune_jobs` lists
the studies. Each runs as a user runs it: a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, columns: int = 80) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": str(columns)},
    )


def assert_wrapped(text: str, width: int = 80) -> None:
    """Every line of a help text fits `width`, except example command lines (kept whole, to
    be copied)."""
    long = [line for line in text.splitlines() if len(line) > width]
    assert all(line.lstrip().startswith("python ") for line in long), long


@pytest.mark.parametrize(
    "command", [["-m", "core.train"], ["tune_jobs/optimizers.py"], ["tune_jobs/search.py"]]
)
def test_help_wraps_at_80_columns(command):
    r = run(*command, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: ")
    assert_wrapped(r.stdout)


def test_core_train_help_lists_allowed_values_and_defaults():
    r = run("-m", "core.train", "--help", columns=200)  # one line per option
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith("  --")}
    assert "one of adam, sgd, ivon; default 'adam'" in lines["--optimizer"]
    assert "an integer in [1, 64]; default 4" in lines["--ensemble-size"]
    assert "one of simple_cnn, simple_cnn_wide, vgg11, vgg11_share" in lines["--arch"]
    assert "a number in [-1, 1] or None" in lines["--alpha"]
    assert "--extra" not in lines


def test_study_help_lists_the_presets_wrapped():
    r = run("tune_jobs/alpha_gamma.py", "--help")
    assert "Presets (--preset):" in r.stdout
    assert "  smoke  a pipeline check of ~2 min on 2 CPUs" in r.stdout


@pytest.mark.parametrize(
    ("command", "typo", "meant"),
    [
        (["-m", "core.train"], "--epoch", "--epochs"),
        (["tune_jobs/alpha_gamma.py"], "--seed", "--seeds"),
    ],
)
def test_a_typo_gets_a_suggestion_in_one_line(command, typo, meant):
    r = run(*command, typo, "2")
    assert r.returncode == 2
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"error: No such option '{typo}'")
    assert "Did you mean" in line and f"'{meant}'" in line
    assert r.stdout == ""


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--optimizer", "adamw"],
            "error: optimizer='adamw' is not allowed; choose one of ['adam', 'sgd', 'ivon']",
        ),
        (["--ensemble-size", "0"], "error: ensemble_size=0: must be an integer in [1, 64]"),
        (["--lr", "fast"], "error: lr='fast': must be a float"),
    ],
)
def test_core_train_refuses_a_bad_value_in_one_line(args, line):
    r = run("-m", "core.train", "--arch", "simple_cnn", *args)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [line]
    assert r.stdout == ""  # refused before any training


def test_a_study_value_click_cannot_read_is_one_line_too():
    r = run("tune_jobs/alpha_gamma.py", "--seeds", "abc")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "error: Invalid value for '--seeds': 'abc' is not a valid integer. (see --help)"
    ]


def test_python_m_tune_jobs_lists_every_study_once():
    r = run("-m", "tune_jobs")
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()[1:]
    names = [row.split()[0] for row in rows]
    assert names == [
        "alpha_gamma",
        "ensemble_size",
        "methods",
        "optimizers",
        "search",
        "sharing",
    ]
    by_name = dict(zip(names, rows, strict=True))
    assert "alpha x gamma (81 cells)" in by_name["alpha_gamma"]
    assert "ensemble x ensemble_size x optimizer x lr (7 cells)" in by_name["optimizers"]
    assert "Optuna over optimizer, lr, alpha, gamma, ensemble_size, sharing" in by_name["search"]
    for name, row in by_name.items():
        assert row.endswith(f": python -m tune_jobs.{name} --smoke")
