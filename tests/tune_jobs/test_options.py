"""The study scripts' options and command line, without Ray: fields, checks, help, entry points."""

import dataclasses
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tune_jobs.cli import command, option
from tune_jobs.errors import JobError
from tune_jobs.options import JobOptions
from tune_jobs.record import study_record
from tune_jobs.study import (
    Study,
    asha_rungs,
    check_study,
    grid,
    grid_configs,
    robustness_epochs,
    with_seeds,
)

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


def test_asha_is_refused_for_a_multi_objective_study():
    study = Study("s", {"epochs": 1}, metric=["val_acc", "params"], mode=["max", "min"])
    check_study(study, JobOptions())  # the study's default (off) is fine
    with pytest.raises(JobError, match="--asha=True: ASHA ranks trials by one metric"):
        check_study(study, JobOptions(asha=True))


def test_grid_helpers():
    space = with_seeds({"lr": grid([0.1, 0.01]), "epochs": 1}, 3)
    configs = grid_configs(space)
    assert len(configs) == 6 == Study("s", space).trial_count
    assert {(c["lr"], c["seed"]) for c in configs} == {
        (lr, s) for lr in (0.1, 0.01) for s in range(3)
    }
    assert with_seeds({}, 1) == {"seed": 0}
    assert Study("s", space, num_samples=4, make_search_alg=lambda _: None).trial_count == 4


@pytest.mark.parametrize(
    ("grace", "factor", "max_t"),
    [(2, 3.0, 4), (2, 3.0, 6), (2, 3.0, 15), (1, 2.0, 10), (1, 3.0, 27), (3, 2.5, 40), (5, 3.0, 5)],
)
def test_asha_rungs_are_rays_own(grace, factor, max_t):
    """The epochs where robustness is also measured are exactly where Ray's ASHA decides:
    its bracket's rung milestones, each reached at the first whole epoch >= the milestone."""
    from ray.tune.schedulers import ASHAScheduler

    scheduler = ASHAScheduler(
        time_attr="epoch", max_t=max_t, grace_period=grace, reduction_factor=factor
    )
    (bracket,) = scheduler._brackets
    milestones = [m for m, _ in bracket._rungs]
    decided = {e for e in range(1, max_t + 1) for m in milestones if e - 1 < m <= e}
    assert asha_rungs(grace, factor, max_t) == tuple(sorted(e for e in decided if e < max_t))


def test_an_asha_study_records_its_robustness_epochs():
    from tune_jobs import alpha_gamma

    study = alpha_gamma.make_study(JobOptions(smoke=True))
    assert robustness_epochs(study, JobOptions(smoke=True)) == (2,)  # 4 epochs, grace 2
    assert study_record(study, JobOptions(smoke=True))["robustness_epochs"] == [2]
    assert robustness_epochs(study, JobOptions(smoke=True, asha=False)) == ()


def test_study_json_records_what_produced_the_study(tmp_path):
    """The runner's record path: save_record writes the provenance it is given into
    study.json (tune_jobs.record cannot compute it: core.provenance asks torch about CUDA)."""
    import json

    from core.columns import PROV_COMMIT, PROV_CPU, PROV_VERSIONS, PROVENANCE, STUDY_STATE
    from core.provenance import provenance
    from tune_jobs import alpha_gamma
    from tune_jobs.runner import save_record

    opts = JobOptions(smoke=True, storage_path=str(tmp_path), name="x")
    study = alpha_gamma.make_study(opts)
    produced_by = provenance()
    assert study_record(study, opts, **{PROVENANCE: produced_by})[PROVENANCE] == produced_by
    assert PROVENANCE not in study_record(study, opts)  # only what the caller passes
    exp = tmp_path / "x"
    exp.mkdir()
    save_record(exp, str(exp), study, opts, "running", **{PROVENANCE: produced_by})
    saved = json.loads((exp / "study.json").read_text())
    assert saved[STUDY_STATE] == "running" and saved[PROVENANCE] == produced_by
    assert saved[PROVENANCE][PROV_VERSIONS]["ray"] and saved[PROVENANCE][PROV_CPU]
    if (REPO / ".git").exists():  # this checkout: its commit
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        assert saved[PROVENANCE][PROV_COMMIT] == head
