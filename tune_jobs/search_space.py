"""The search study's define-by-run space, in a module of its own so that Ray Tune can pickle
it with the searcher's state (a closure cannot be pickled, which breaks checkpointing/resume)."""

from __future__ import annotations

from core.config import ENSEMBLES, valid_sharing_regimes

# Learning-rate range per optimizer (log-uniform): each has its own working scale.
LR_RANGE = {"adam": (1e-4, 1e-2), "sgd": (1e-3, 0.2), "ivon": (1e-2, 0.5)}
ENSEMBLE_SIZES = (2, 8)  # members of every kind but `single`
# Each kind's own hyperparameters: (suggest method, name, arguments), suggested only in the
# trials of that kind. Packed-Ensembles: the paper's alpha 2-3 and gamma 1-2, widened a little;
# MIMO: rho up to the authors' ImageNet 0.6 and a little beyond, b from 1 to their CIFAR 4.
KIND_PARAMS: dict[str, tuple[tuple[str, str, dict], ...]] = {
    "batch": (
        ("float", "alpha", {"low": -1.0, "high": 1.0}),
        ("float", "gamma", {"low": -1.0, "high": 1.0}),
    ),
    "packed": (
        ("float", "packed_width", {"low": 1.0, "high": 4.0, "step": 0.5}),
        ("int", "packed_groups", {"low": 1, "high": 4}),
    ),
    "mimo": (
        ("float", "mimo_rho", {"low": 0.0, "high": 0.75}),
        ("int", "mimo_batch_repeat", {"low": 1, "high": 4}),
    ),
}


class SearchSpace:
    """Define-by-run: the lr range depends on the optimizer; sharing is one valid pair.

    With one kind (`kinds=("batch",)`, the default) the parameters are the ones the search has
    always suggested. With several, `ensemble` is suggested first and each kind gets its own
    parameters (KIND_PARAMS), its ensemble size (none for `single`) and its own sharing label
    `sharing_<kind>` (Optuna keeps one set of choices per name; each kind's valid pairs differ).
    """

    def __init__(self, arch: str, kinds: tuple[str, ...] = ("batch",)) -> None:
        unknown = [k for k in kinds if k not in ENSEMBLES]
        if unknown or not kinds:
            raise ValueError(f"kinds={list(kinds)}: allowed {list(ENSEMBLES)}")
        self.kinds = tuple(kinds)
        self.regimes = {
            k: [f"{n}/{e}" for n, e in valid_sharing_regimes(arch, k)] for k in self.kinds
        }

    def __call__(self, trial) -> dict:
        opt = trial.suggest_categorical("optimizer", list(LR_RANGE))
        trial.suggest_float("lr", *LR_RANGE[opt], log=True)
        if self.kinds == ("batch",):  # the search's original space, name for name
            trial.suggest_float("alpha", -1.0, 1.0)
            trial.suggest_float("gamma", -1.0, 1.0)
            trial.suggest_int("ensemble_size", *ENSEMBLE_SIZES)
            net, ens = trial.suggest_categorical("sharing", self.regimes["batch"]).split("/")
            # A bundle replaces the "net/ens" label: both fields set together (core.config).
            return {"sharing": {"sharing_network": net, "sharing_ensemble": ens}}
        kind = trial.suggest_categorical("ensemble", list(self.kinds))
        for method, name, kwargs in KIND_PARAMS.get(kind, ()):
            getattr(trial, f"suggest_{method}")(name, **kwargs)
        out: dict = {} if kind != "single" else {"ensemble_size": 1}
        if kind != "single":
            trial.suggest_int("ensemble_size", *ENSEMBLE_SIZES)
        if len(self.regimes[kind]) > 1:
            label = f"sharing_{kind}"
            net, ens = trial.suggest_categorical(label, self.regimes[kind]).split("/")
            out[label] = {"sharing_network": net, "sharing_ensemble": ens}
        return out
