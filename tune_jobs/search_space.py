"""The search study's define-by-run space, in a module of its own so that Ray Tune can pickle
it with the searcher's state (a closure cannot be pickled, which breaks checkpointing/resume)."""

from __future__ import annotations

from core.config import valid_sharing_regimes

# Learning-rate range per optimizer (log-uniform): each has its own working scale.
LR_RANGE = {"adam": (1e-4, 1e-2), "sgd": (1e-3, 0.2), "ivon": (1e-2, 0.5)}


class SearchSpace:
    """Define-by-run: the lr range depends on the optimizer; sharing is one valid pair."""

    def __init__(self, arch: str) -> None:
        self.regimes = [f"{n}/{e}" for n, e in valid_sharing_regimes(arch, "batch")]

    def __call__(self, trial) -> dict:
        opt = trial.suggest_categorical("optimizer", list(LR_RANGE))
        trial.suggest_float("lr", *LR_RANGE[opt], log=True)
        trial.suggest_float("alpha", -1.0, 1.0)
        trial.suggest_float("gamma", -1.0, 1.0)
        trial.suggest_int("ensemble_size", 2, 8)
        net, ens = trial.suggest_categorical("sharing", self.regimes).split("/")
        # A bundle replaces the "net/ens" label: both fields set together (core.config).
        return {"sharing": {"sharing_network": net, "sharing_ensemble": ens}}
