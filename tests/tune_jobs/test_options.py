"""The study scripts' options and command line, without Ray: fields, checks, help, entry points."""

import dataclasses
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.checks import integer
from tune_jobs.cli import command, option
from tune_jobs.errors import JobError
from tune_jobs.options import JobOptions, check_option, set_items
from tune_jobs.study import Study

REPO = Path(__file__).resolve().parents[2]
STUDIES = ["alpha_gamma", "ensemble_size", "optimizers", "sharing", "search"]


@pytest.mark.parametrize("name", STUDIES)
def test_options_and_study_spaces_load_neither_ray_nor_torch(name):
    """Options are checked in a moment, before Ray starts: building a space loads no Ray/torch."""
    code = f"""
import sys
from tune_jobs.options import JobOptions
from tune_jobs.study import check_study
from tune_jobs import {name} as study_module
for smoke in (False, True):
    opts = JobOptions(smoke=smoke)
    check_study(study_module.make_study(opts), opts)
print(sorted(m for m in ("ray", "torch") if m in sys.modules))
"""
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_no_module_in_tune_jobs_shadows_a_top_level_one():
    """Run as a script, tune_jobs/ itself is sys.path[0]: its file names must be no package's."""
    for path in (REPO / "tune_jobs").glob("*.py"):
        if path.stem in ("__init__", "__main__"):  # package files: never imported by that name
            continue
        assert path.stem not in sys.stdlib_module_names, path.name
        assert importlib.util.find_spec(path.stem) is None, path.name


def test_no_script_edits_sys_path():
    for path in (REPO / "tune_jobs").glob("*.py"):
        assert "sys.path" not in path.read_text(), path.name


@pytest.mark.parametrize("cwd", [REPO, Path("/")])
@pytest.mark.parametrize("how", ["script", "module"])
def test_a_study_runs_as_script_and_as_module_from_anywhere(cwd, how):
    entry = [str(REPO / "tune_jobs" / "alpha_gamma.py")]
    if how == "module":
        entry = ["-m", "tune_jobs.alpha_gamma"]
    r = subprocess.run(
        [sys.executable, *entry, "--help"], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "--max-failures" in r.stdout and "alpha x gamma" in r.stdout


# ----------------------------------------------------------------------------------------
# The command line, in-process
# ----------------------------------------------------------------------------------------
def stopping_study(seen: dict):
    """A make_study that records what it got and stops before anything runs."""

    def make_study(opts, **extra):
        seen.update(opts=opts, extra=extra)
        raise JobError("stopped by the test")

    return make_study


def invoke(args, extra=()):
    seen: dict = {}
    result = CliRunner().invoke(command(stopping_study(seen), list(extra), doc="A study."), args)
    return result, seen


def test_help_lists_every_option_with_its_help():
    result, _ = invoke(["--help"], extra=[option("num_samples", 20, int, "Trials it runs.")])
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # click wraps the help column
    for f in dataclasses.fields(JobOptions):
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        assert flag in text, flag
        assert " ".join(f.metadata["help"].split()) in text, f.name
    assert "--asha / --no-asha" in text
    assert "--num-samples" in text and "Trials it runs." in text
    assert text.startswith("Usage:") and "A study." in text


def test_options_reach_the_study():
    result, seen = invoke(
        ["--seeds", "3", "--no-asha", "--set", "norm=member", "--set", "lr=0.1", "--n", "7"],
        extra=[option("n", 1, int, "A number.")],
    )
    assert result.exit_code == 2
    assert "error: stopped by the test" in result.output
    opts = seen["opts"]
    assert (opts.seeds, opts.asha, opts.overrides) == (3, False, ("norm=member", "lr=0.1"))
    assert seen["extra"] == {"n": 7}
    _, seen = invoke([])
    assert seen["opts"] == JobOptions()  # every default is the field's default
    assert seen["opts"].asha is None  # neither --asha nor --no-asha: the study decides


def test_a_typo_is_refused_with_a_suggestion():
    result, seen = invoke(["--epoch", "3"])
    assert result.exit_code == 2 and not seen
    assert re.search(r"No such option.*--epoch.*Did you mean.*--epochs", result.output)


def test_a_bad_value_is_refused_in_one_line():
    study = Study("s", {"epochs": 1})
    result = CliRunner().invoke(command(lambda opts: study), ["--seeds", "0"])
    assert result.exit_code == 2
    assert result.output == "error: --seeds=0: must be an integer in [1, 1,000]\n"


# ----------------------------------------------------------------------------------------
# Checks and grids
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"dataset": "mnist"}, "--dataset='mnist' is not allowed; choose one of"),
        ({"seeds": 0}, "--seeds=0: must be an integer in [1, 1,000]"),
        ({"epochs": 0}, "--epochs=0: must be an integer in [1, 10,000]"),
        ({"cpus_per_trial": 0}, "--cpus-per-trial=0: must be a number > 0"),
        ({"gpus_per_trial": 1.5}, "--gpus-per-trial=1.5: must be a fraction in [0, 1]"),
        ({"max_concurrent": 0}, "--max-concurrent=0: must be an integer in [1, 100,000]"),
        ({"grace_period": 0}, "--grace-period=0: must be an integer in [1, 10,000]"),
        ({"reduction_factor": 1}, "--reduction-factor=1: must be a number > 1 and <= 1000"),
        ({"data_dir": "/nonexistent/x"}, "--data-dir='/nonexistent/x': no such folder"),
        ({"overrides": ["norm"]}, "--set='norm': must be key=value"),
    ],
)
def test_each_bad_option_is_refused_by_name(opts, message):
    options = JobOptions(**opts)
    with pytest.raises(JobError) as err:
        options.check()
        options.parsed_overrides()  # --set is read where the config is built
    assert message in str(err.value)


def test_set_items_is_the_one_reading_of_set():
    """(key, item as given, value text) in order, stripped; an item without '=' refused."""
    items = [" lr = 0.5", "norm=member", "lr=0.1"]
    assert list(set_items(items)) == [
        ("lr", " lr = 0.5", "0.5"),
        ("norm", "norm=member", "member"),
        ("lr", "lr=0.1", "0.1"),
    ]
    with pytest.raises(JobError, match=r"^--set='lr': must be key=value, e.g. --set norm=member$"):
        list(set_items(["lr"]))


def test_integer_options_are_checked_by_cores_integer_check():
    """Bounds worded as a config field's are (core.checks.integer), raised as a JobError."""
    check_option("--seeds", 3, integer(lo=1, hi=1000))
    with pytest.raises(JobError, match=r"^--seeds=0: must be an integer in \[1, 1,000\]$"):
        check_option("--seeds", 0, integer(lo=1, hi=1000))
