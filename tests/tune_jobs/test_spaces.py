"""The studies' full grids, checked without running them, and option errors before Ray."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import FAST_WEIGHT_SWEEP, TrialConfig, valid_sharing_regimes
from tune_jobs import alpha_gamma, ensemble_size, methods, optimizers, search, sharing
from tune_jobs.errors import JobError
from tune_jobs.options import JobOptions
from tune_jobs.study import grid_configs, validate_space

REPO = Path(__file__).resolve().parents[2]


def configs(module, **opts):
    study = module.make_study(JobOptions(**opts))
    validate_space(study)  # every cell is a valid TrialConfig
    return [TrialConfig.from_dict(c) for c in grid_configs(study.space)]


def test_alpha_gamma_grid_is_81_cells_in_sweep_order():
    cfgs = configs(alpha_gamma)
    assert len(cfgs) == 81
    assert {(c.alpha, c.gamma) for c in cfgs} == {
        (a, g) for a in FAST_WEIGHT_SWEEP for g in FAST_WEIGHT_SWEEP
    }
    assert {(c.arch, c.ensemble, c.ensemble_size, c.optimizer, c.epochs) for c in cfgs} == {
        ("vgg11", "batch", 4, "adam", 15)
    }
    assert alpha_gamma.make_study(JobOptions()).asha is True


def test_seeds_are_a_grid_dimension():
    cfgs = configs(alpha_gamma, seeds=3)
    assert len(cfgs) == 243
    assert sorted({c.seed for c in cfgs}) == [0, 1, 2]


def test_ensemble_size_grid_is_24_cells_with_fixed_batch_size():
    cfgs = configs(ensemble_size)
    assert len(cfgs) == 24
    assert sorted({c.ensemble_size for c in cfgs}) == list(range(2, 10))
    assert sorted({c.lr for c in cfgs}) == [0.0002, 0.002, 0.02]
    assert {c.batch_size for c in cfgs} == {128}
    assert {(c.alpha, c.gamma) for c in cfgs} == {(0.5, 0.5)}


def test_optimizers_grid_is_6_cells_and_a_deep_ensemble():
    cfgs = configs(optimizers)
    assert len(cfgs) == 7
    assert {(c.ensemble, c.ensemble_size, c.optimizer) for c in cfgs} == {
        (e, m, o) for e, m in (("single", 1), ("batch", 8)) for o in ("adam", "sgd", "ivon")
    } | {("deep", 8, "adam")}
    assert {(c.alpha, c.gamma, c.epochs, c.arch) for c in cfgs} == {(1.0, 0.2, 15, "vgg11")}
    assert all(c.val_fraction > 0 for c in cfgs)  # validation curves every epoch


def test_sharing_grid_is_the_valid_set():
    cfgs = configs(sharing)
    pairs = {(c.sharing_network, c.sharing_ensemble) for c in cfgs}
    assert pairs == set(valid_sharing_regimes("vgg11_share", "batch"))
    assert len(cfgs) == len(pairs) == 16  # none/early/deep/all each: every pair is valid
    assert {c.arch for c in cfgs} == {"vgg11_share"}
    assert {(c.ensemble_size, c.alpha, c.gamma, c.optimizer, c.epochs) for c in cfgs} == {
        (8, 0.5, 0.5, "adam", 10)
    }
    assert all(c.grad_clip is None and c.patience is None for c in cfgs)


def test_sharing_on_plain_vgg11_runs_its_valid_pairs_only():
    cfgs = configs(sharing, overrides=["arch=vgg11"])
    assert {(c.sharing_network, c.sharing_ensemble) for c in cfgs} == {
        (n, e) for n in ("none", "deep") for e in ("none", "early", "deep", "all")
    }


def test_sharing_on_cifar20_clips_and_stops_early():
    cfgs = configs(sharing, dataset="cifar20")
    assert {(c.dataset, c.grad_clip, c.patience) for c in cfgs} == {("cifar20", 1.0, 5)}
    assert all(c.val_fraction > 0 for c in cfgs)


def test_smoke_presets_are_small():
    for module in (alpha_gamma, ensemble_size, optimizers, sharing, methods):
        cfgs = configs(module, smoke=True)
        assert {c.arch for c in cfgs} == {"simple_cnn"}
        assert all(c.epochs <= 4 and c.train_subset <= 4000 and c.test_subset <= 500 for c in cfgs)
        assert len(cfgs) <= 7


def test_presets_scale_each_study():
    """--preset cpu: simple_cnn on a stratified subset, a reduced grid; --smoke is --preset
    smoke; full keeps the student study's VGG11 on the whole training set."""
    cells = {"alpha_gamma": 25, "ensemble_size": 12, "optimizers": 7, "sharing": 9, "methods": 8}
    for module in (alpha_gamma, ensemble_size, optimizers, sharing, methods):
        name = module.__name__.rsplit(".", 1)[1]
        cfgs = configs(module, preset="cpu")
        assert len(cfgs) == cells[name], name
        assert {(c.arch, c.train_subset, c.epochs) for c in cfgs} == {("simple_cnn", 5000, 6)}
        if module is sharing:
            assert {c.ensemble_size for c in cfgs} == {sharing.CPU_MEMBERS}
            # early and deep on each axis, so that claim 4 can compare them
            assert {(c.sharing_network, c.sharing_ensemble) for c in cfgs} == {
                (n, e) for n in ("none", "early", "deep") for e in ("none", "early", "deep")
            }
        full = configs(module)
        assert {c.train_subset for c in full} == {None} and "simple_cnn" not in {
            c.arch for c in full
        }
        smoke = module.make_study(JobOptions(smoke=True)).space
        assert smoke == module.make_study(JobOptions(preset="smoke")).space
    with pytest.raises(JobError, match="--preset"):
        JobOptions(preset="huge").check()
    with pytest.raises(JobError, match="--smoke"):
        JobOptions(preset="cpu", smoke=True).check()


def test_learn_preset_resolves_for_each_study():
    """--preset learn: simple_cnn_wide on every training and test image, 20 epochs of batch
    128 under a cosine schedule, the split following the seed, each study's learn grid (sized
    in tune_jobs/options.py); --preset cpu keeps what its committed findings ran with."""
    cells = {"alpha_gamma": 9, "ensemble_size": 9, "optimizers": 7, "sharing": 9}
    learn = {
        "arch": "simple_cnn_wide",
        "train_subset": None,
        "test_subset": None,
        "val_fraction": 0.1,
        "epochs": 20,
        "batch_size": 128,
        "schedule": "cosine",
        "split_seed": None,
    }
    for module in (alpha_gamma, ensemble_size, optimizers, sharing):
        name = module.__name__.rsplit(".", 1)[1]
        cfgs = configs(module, preset="learn", seeds=3)
        assert len(cfgs) == 3 * cells[name], name
        assert {tuple(getattr(c, k) for k in learn) for c in cfgs} == {tuple(learn.values())}
        assert sorted({c.seed for c in cfgs}) == [0, 1, 2]
        cpu = configs(module, preset="cpu")
        assert {(c.split_seed, c.schedule, c.arch) for c in cpu} == {(0, "constant", "simple_cnn")}
    ag = configs(alpha_gamma, preset="learn")
    assert {(c.alpha, c.gamma) for c in ag} == {
        (a, g) for a in alpha_gamma.LEARN_SWEEP for g in alpha_gamma.LEARN_SWEEP
    }
    assert {c.ensemble_size for c in configs(sharing, preset="learn")} == {4}
    assert {c.ensemble_size for c in configs(ensemble_size, preset="learn")} == {2, 4, 8}
    # the preset is a default like the others: --epochs and --set still win
    again = configs(optimizers, preset="learn", epochs=12, overrides=("split_seed=0",))
    assert {(c.epochs, c.split_seed) for c in again} == {(12, 0)}


def test_learn_preset_is_listed_in_help():
    out = subprocess.run(
        [sys.executable, str(REPO / "tune_jobs" / "optimizers.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "learn" in out and "simple_cnn_wide" in out


def test_methods_cells_meet_their_budgets():
    """simple_cnn (--preset cpu), M = 4: a `params` cell has about one network's distinct
    parameters (within 20%), a `flops` cell about M networks' training FLOPs per image (the
    shared trunk, whose early region runs once, at 2/3 of them); `both` cells meet both."""
    from core.cost import config_flops_per_image
    from core.models import count_parameters, model_for_config

    cost = {}
    for c in configs(methods, preset="cpu"):
        params = count_parameters(model_for_config(c, 10, 3))
        cost[c.extra["method"], c.extra["budget"]] = (params, config_flops_per_image(c, 10))
    p1, f1 = cost["single", "reference"]
    for (method, budget), (p, f) in cost.items():
        if budget in ("params", "both"):
            assert 1.0 <= p / p1 <= 1.2, (method, p / p1)
        if budget in ("flops", "both"):
            low = 0.6 if method == "shared_trunk" else 0.95
            assert low <= f / (methods.M * f1) <= 1.1, (method, f / f1)
    assert len(cost) == len(methods.CELLS)  # every cell a (method, budget) of its own


def test_search_refuses_replicates():
    with pytest.raises(JobError, match="--seeds=3: the search runs one seed per suggested config"):
        search.make_study(JobOptions(seeds=3))


def test_search_objectives():
    assert search.parse_objectives("accuracy,params") == ["accuracy", "params"]
    for bad in ("params", "accuracy,speed", "accuracy,params,throughput", ""):
        with pytest.raises(JobError, match="--objectives"):
            search.parse_objectives(bad)


def _sample_search(kinds: tuple[str, ...], n: int) -> list[tuple[dict, dict]]:
    """(suggested params, TrialConfig dict) of n random draws of the search's space."""
    import optuna

    from tune_jobs.search_space import SearchSpace

    fixed = search.make_study(JobOptions(), kinds=",".join(kinds)).space
    space, out = SearchSpace("vgg11", kinds), []
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(n):
        trial = study.ask()
        extra = space(trial)
        cfg = TrialConfig.from_dict({**fixed, **trial.params, **extra})
        out.append((dict(trial.params), dataclasses.asdict(cfg)))
        study.tell(trial, 0.0)
    return out


def test_the_search_picks_the_kind_with_its_own_parameters():
    """--kinds: every draw is a valid config; each kind's own parameters are suggested only in
    its trials (packed_width only for packed, mimo_rho only for mimo, alpha only for batch)."""
    kinds = ("single", "batch", "deep", "packed", "mimo")
    draws = _sample_search(kinds, 80)
    own = {
        "batch": {"alpha", "gamma"},
        "packed": {"packed_width", "packed_groups"},
        "mimo": {"mimo_rho", "mimo_batch_repeat"},
    }
    seen = set()
    for params, cfg in draws:
        kind = params["ensemble"]
        seen.add(kind)
        assert cfg["ensemble"] == kind
        for other, names in own.items():
            assert (names <= set(params)) == (other == kind), (kind, params)
        assert ("ensemble_size" in params) == (kind != "single")
        if kind == "packed":
            assert (cfg["packed_width"], cfg["packed_groups"]) == (
                params["packed_width"],
                params["packed_groups"],
            )
    assert seen == set(kinds)


def test_one_kind_searches_the_original_space():
    (params, cfg), *_ = _sample_search(("batch",), 1)
    assert set(params) == {"optimizer", "lr", "alpha", "gamma", "ensemble_size", "sharing"}
    assert cfg["ensemble"] == "batch"
    for bad in ("", "batch,batch", "mc_dropout"):
        with pytest.raises(JobError, match="--kinds"):
            search.parse_kinds(bad)


def run_job(*args):
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "mnist"], "Invalid value for '--dataset': 'mnist' is not one of 'cifar10'"),
        (["--set", "alpha=1.5"], "alpha=1.5: fast-weight init must be a number in [-1, 1]"),
        (["--set", "batchsize=64"], "unknown config field 'batchsize'"),
        (["--gpus-per-trial", "2"], "--gpus-per-trial=2.0: this machine has at most 0 GPU(s)"),
        (["--data-dir", "/nonexistent/cifar"], "--data-dir='/nonexistent/cifar': no such folder"),
    ],
)
def test_bad_options_are_refused_before_ray_starts(args, message, tmp_path):
    if message.startswith("--gpus") and __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = run_job("tune_jobs/ensemble_size.py", "--storage-path", str(tmp_path), *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


@pytest.mark.parametrize("value", ["0.5", "abc"])
def test_swept_field_cannot_be_fixed(tmp_path, value):
    """Swept is said first: `--set alpha=abc` hears that alpha is swept, not that 'abc' is no
    float (a value of a field the study sweeps is never used)."""
    args = ["--smoke", "--storage-path", str(tmp_path), "--set", f"alpha={value}"]
    r = run_job("tune_jobs/alpha_gamma.py", *args)
    assert r.returncode == 2
    assert r.stderr == (
        f"error: --set='alpha={value}': alpha is swept by the alpha_gamma study (values "
        "[-0.5, 0.5]); allowed: --set of a field the study does not sweep (it sweeps "
        "['alpha', 'gamma'])\n"
    )
    assert r.stdout == "" and not any(tmp_path.iterdir())  # no Ray banner, nothing written


def test_a_bad_value_of_a_field_not_swept_is_still_refused_by_type(tmp_path):
    r = run_job("tune_jobs/alpha_gamma.py", "--storage-path", str(tmp_path), "--set", "lr=abc")
    assert r.returncode == 2
    assert r.stderr == "error: lr='abc': must be a float\n"
