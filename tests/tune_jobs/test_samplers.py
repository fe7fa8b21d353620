"""The search's NSGA-II sampler pickles (Ray Tune pickles the searcher into the experiment
state) and, unpickled, samples on as the original would; each `--sampler` choice builds its
Optuna sampler, and its searcher pickles."""

import pickle
import threading

import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from tune_jobs import search
from tune_jobs.errors import JobError
from tune_jobs.options import JobOptions
from tune_jobs.samplers import NSGAIISampler
from tune_jobs.search_space import SearchSpace

EXPECTED = {  # (--sampler, objectives) -> the Optuna sampler the searcher gets
    ("auto", "accuracy"): optuna.samplers.TPESampler,
    ("auto", "accuracy,params"): NSGAIISampler,
    ("tpe", "accuracy,params"): optuna.samplers.TPESampler,
    ("nsga2", "accuracy"): NSGAIISampler,
    ("random", "accuracy"): optuna.samplers.RandomSampler,
    ("random", "accuracy,flops"): optuna.samplers.RandomSampler,
}


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
    return x + y, x - y


def _study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)


def test_a_sampler_that_has_sampled_pickles_with_a_fresh_lock():
    sampler = NSGAIISampler(seed=0, population_size=4)
    study = _study(sampler)
    study.optimize(_objective, n_trials=10)  # past the first generation: the caches are filled
    copy = pickle.loads(pickle.dumps(sampler))
    locks = [k for k, v in vars(sampler).items() if isinstance(v, type(threading.Lock()))]
    for key in locks:  # Optuna 5 holds one (`_thread_lock`); Optuna 4 none
        assert isinstance(getattr(copy, key), type(threading.Lock()))
        assert getattr(copy, key) is not getattr(sampler, key)
        assert not getattr(copy, key).locked()
    assert {k: v for k, v in vars(copy).items() if k not in locks}.keys() == {
        k for k in vars(sampler) if k not in locks
    }


def test_the_unpickled_sampler_proposes_what_the_original_does():
    """Two studies on one sampler's state: the original and its pickled copy, each fed the
    same 12 trials, then asked for 4 more: the same parameters (same RNG state, caches)."""
    original = NSGAIISampler(seed=3, population_size=4)
    study = _study(original)
    study.optimize(_objective, n_trials=12)
    copy = pickle.loads(pickle.dumps(original))
    twin = _study(copy)
    for t in study.trials:
        twin.add_trial(t)
    study.optimize(_objective, n_trials=4)
    twin.optimize(_objective, n_trials=4)
    assert [t.params for t in study.trials[12:]] == [t.params for t in twin.trials[12:]]


def test_the_multi_objective_searcher_pickles(tmp_path):
    """What tune.Tuner does with the search study's searcher when it starts (it failed with
    `cannot pickle '_thread.lock' object` on Optuna 5's own NSGA-II sampler)."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher = OptunaSearch(
        space=SearchSpace("vgg11"),
        metric=["val_acc", "params"],
        mode=["max", "min"],
        sampler=NSGAIISampler(seed=0),
        storage=storage,
        study_name="s",
    )
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = OptunaSearch()
    restored.restore(str(tmp_path / "searcher.pkl"))
    suggested = restored.suggest("trial_1")
    assert suggested["optimizer"] in ("adam", "sgd", "ivon")
    assert 2 <= suggested["ensemble_size"] <= 8


@pytest.mark.parametrize(("sampler", "objectives"), list(EXPECTED))
def test_each_sampler_choice_is_the_searchers_and_pickles(tmp_path, sampler, objectives):
    study = search.make_study(JobOptions(), objectives=objectives, sampler=sampler)
    assert study.info["sampler"] == sampler
    searcher = study.make_search_alg(tmp_path / "exp")
    assert type(searcher._sampler) is EXPECTED[(sampler, objectives)]
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = OptunaSearch()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert type(restored._sampler) is EXPECTED[(sampler, objectives)]
    assert 2 <= restored.suggest("trial_1")["ensemble_size"] <= 8


def test_an_unknown_sampler_is_refused():
    with pytest.raises(JobError, match=r"--sampler='cmaes': allowed auto, tpe, nsga2, random"):
        search.make_study(JobOptions(), sampler="cmaes")
